/* date.c - RFC 3339 date-times <-> UTC milliseconds (device-safe).
 *
 * Proleptic Gregorian calendar, years 0000 to 9999 (year 0000 is a leap
 * year), integer arithmetic only, after Howard Hinnant's days_from_civil
 * and civil_from_days (http://howardhinnant.github.io/date_algorithms.html).
 */
#include "sw_internal.h"

#define MS_PER_DAY 86400000LL

/* ==== Calendar ==== */

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;                                   /* [0, 399] */
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
	return era * 146097 + doe - 719468;
}

/* The date of day z since 1970-01-01. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
	static const unsigned char n[12] = { 31, 28, 31, 30, 31, 30,
					     31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : n[m - 1];
}

/* ==== Formatting ==== */

/* Writes v as exactly n decimal digits (v < 10^n). */
static void put_digits(char *out, unsigned v, int n)
{
	while (n-- > 0) {
		out[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

size_t sw_date_format(int64_t ms, char out[SW_DATE_LEN + 1])
{
	int64_t days, rem, y;
	unsigned m, d, t;

	if (ms < SW_DATE_MIN_MS || ms > SW_DATE_MAX_MS)
		return 0;
	/* Floor division: -1 ms is the last millisecond of 1969-12-31. */
	days = ms / MS_PER_DAY;
	rem = ms % MS_PER_DAY;
	if (rem < 0) {
		rem += MS_PER_DAY;
		days--;
	}
	civil_from_days(days, &y, &m, &d);
	t = (unsigned)rem;

	put_digits(out, (unsigned)y, 4);
	out[4] = '-';
	put_digits(out + 5, m, 2);
	out[7] = '-';
	put_digits(out + 8, d, 2);
	out[10] = 'T';
	put_digits(out + 11, t / 3600000, 2);
	out[13] = ':';
	put_digits(out + 14, t / 60000 % 60, 2);
	out[16] = ':';
	put_digits(out + 17, t / 1000 % 60, 2);
	out[19] = '.';
	put_digits(out + 20, t % 1000, 3);
	out[23] = 'Z';
	out[24] = '\0';
	return SW_DATE_LEN;
}

/* ==== Parsing ==== */

/* Reads n digits at s[*pos] into *v and advances; 0 when the input ends
 * early or a byte is not a digit. */
static int get_digits(const char *s, size_t len, size_t *pos, int n,
		      unsigned *v)
{
	unsigned x = 0;
	int i;

	if (len - *pos < (size_t)n)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[*pos + i];

		if (c < '0' || c > '9')
			return 0;
		x = x * 10 + (c - '0');
	}
	*pos += (size_t)n;
	*v = x;
	return 1;
}

/* Consumes the byte c at s[*pos]; 0 when it is something else or the
 * input ends. */
static int get_char(const char *s, size_t len, size_t *pos, char c)
{
	if (*pos >= len || s[*pos] != c)
		return 0;
	(*pos)++;
	return 1;
}

static sw_status date_fail(const char **why, const char *msg)
{
	if (why != NULL)
		*why = msg;
	return SW_EDATE;
}

/* Parses the zone at s[*pos]: Z, +HH:MM, -HH:MM, +HHMM or -HHMM, into
 * minutes east of UTC. Returns NULL or the reason it failed. */
static const char *parse_zone(const char *s, size_t len, size_t *pos,
			      int64_t *off_min)
{
	unsigned oh, om;
	int sign;

	if (*pos >= len)
		return "missing time zone: expected Z, +HH:MM or -HH:MM after the time";
	switch (s[*pos]) {
	case 'Z':
		(*pos)++;
		*off_min = 0;
		return NULL;
	case 'z':
		return "expected uppercase 'Z' for UTC, found lowercase 'z'";
	case '+':
		sign = 1;
		break;
	case '-':
		sign = -1;
		break;
	default:
		return "expected Z, +HH:MM or -HH:MM after the time";
	}
	(*pos)++;
	if (!get_digits(s, len, pos, 2, &oh))
		return "expected a 2-digit offset hour after the sign";
	if (*pos == len)
		return "offset has hours only: expected +HH:MM or +HHMM";
	get_char(s, len, pos, ':');
	if (!get_digits(s, len, pos, 2, &om))
		return "expected a 2-digit offset minute";
	if (oh > 23)
		return "offset hour must be 00 to 23";
	if (om > 59)
		return "offset minute must be 00 to 59";
	*off_min = sign * (int64_t)(oh * 60 + om);
	return NULL;
}

sw_status sw_date_parse(const char *s, size_t len, int64_t *ms,
			const char **why)
{
	unsigned y, mo, d, h, mi, sec, frac = 0;
	size_t pos = 0;
	int nfrac = 0;
	int64_t off_min, t;
	const char *zerr;

	if (ms == NULL || (s == NULL && len > 0)) {
		if (why != NULL)
			*why = "no input or no output";
		return SW_EINVAL;
	}
	/* Date. */
	if (!get_digits(s, len, &pos, 4, &y))
		return date_fail(why, "expected a 4-digit year (YYYY-MM-DD)");
	if (!get_char(s, len, &pos, '-'))
		return date_fail(why, "expected '-' after the year");
	if (!get_digits(s, len, &pos, 2, &mo))
		return date_fail(why, "expected a 2-digit month");
	if (mo < 1 || mo > 12)
		return date_fail(why, "month must be 01 to 12");
	if (!get_char(s, len, &pos, '-'))
		return date_fail(why, "expected '-' after the month");
	if (!get_digits(s, len, &pos, 2, &d))
		return date_fail(why, "expected a 2-digit day");
	if (d < 1)
		return date_fail(why, "day 00 is not allowed");
	if (d > days_in_month(y, mo))
		return date_fail(why, mo == 2 && d == 29 ?
			"February 29 in a year that is not a leap year" :
			"day is past the end of the month");
	/* Time. */
	if (pos < len && s[pos] == 't')
		return date_fail(why, "expected uppercase 'T' between date and time, found lowercase 't'");
	if (!get_char(s, len, &pos, 'T'))
		return date_fail(why, "expected 'T' between date and time");
	if (!get_digits(s, len, &pos, 2, &h))
		return date_fail(why, "expected a 2-digit hour");
	if (h == 24)
		return date_fail(why, "hour 24 is not allowed");
	if (h > 23)
		return date_fail(why, "hour must be 00 to 23");
	if (!get_char(s, len, &pos, ':'))
		return date_fail(why, "expected ':' after the hour");
	if (!get_digits(s, len, &pos, 2, &mi))
		return date_fail(why, "expected a 2-digit minute");
	if (mi > 59)
		return date_fail(why, "minute must be 00 to 59");
	if (!get_char(s, len, &pos, ':'))
		return date_fail(why, "expected ':' after the minute (seconds are required)");
	if (!get_digits(s, len, &pos, 2, &sec))
		return date_fail(why, "expected a 2-digit second");
	if (sec == 60)
		return date_fail(why, "second 60 (leap second) is not allowed");
	if (sec > 59)
		return date_fail(why, "second must be 00 to 59");
	/* Fraction: any number of digits, milliseconds kept, rest truncated. */
	if (get_char(s, len, &pos, '.')) {
		while (pos < len && s[pos] >= '0' && s[pos] <= '9') {
			if (nfrac < 3)
				frac = frac * 10 + (unsigned)(s[pos] - '0');
			nfrac++;
			pos++;
		}
		if (nfrac == 0)
			return date_fail(why, "expected at least one digit after '.'");
		for (; nfrac < 3; nfrac++)
			frac *= 10;
	}
	/* Zone. */
	zerr = parse_zone(s, len, &pos, &off_min);
	if (zerr != NULL)
		return date_fail(why, zerr);
	if (pos != len)
		return date_fail(why, "unexpected bytes after the time zone");

	t = days_from_civil(y, mo, d) * MS_PER_DAY +
	    (int64_t)(h * 3600000u + mi * 60000u + sec * 1000u + frac) -
	    off_min * 60000;
	if (t < SW_DATE_MIN_MS || t > SW_DATE_MAX_MS)
		return date_fail(why, "date-time in UTC is outside 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z");
	*ms = t;
	return SW_OK;
}
