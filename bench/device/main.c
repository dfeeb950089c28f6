/* main.c - the device encode path, for its Cortex-M4 footprint.
 *
 * What firmware does to report an update: build it by hand (no heap),
 * encode it with sw_pb_encode into a static buffer sized at compile time,
 * hand the bytes to the radio. Built twice by bench/device/device.mk:
 * as is, and with -DBASELINE (the same program without the encoder) so
 * that the difference is the encode path alone. With -DNANOPB the same
 * message goes through nanopb's pb_encode instead; with -DDEVICE through
 * the lean device encoder (sw_device.h: integers only, no floating point
 * linked); -DDEVICE_DEC adds a billing of non-integral costs given as
 * integers at a decimal scale (still no floating point), -DDEVICE_NUMBER
 * the same costs as doubles (the double arithmetic of the compact number
 * forms linked).
 */
#include <stddef.h>
#include <stdint.h>

#if defined(NANOPB)
#include <pb_encode.h>
#include "sessionwire.pb.h"
#elif defined(DEVICE) || defined(DEVICE_DEC) || defined(DEVICE_NUMBER)
#include "sessionwire/sw_device.h"
#include "sessionwire/sw_pb.h"
#else
#include "sessionwire/sessionwire.h"
#endif

#define MAX_STR 32
#define MAX_ITEMS 4

#ifdef NANOPB
static uint8_t out[sessionwire_v1_Session_size];
#else
static uint8_t out[SW_PB_MAX_SIZE(MAX_STR, MAX_ITEMS, MAX_ITEMS)];
#endif

/* Where the bytes go: the radio. volatile so nothing is optimised away. */
volatile const uint8_t *radio_buf;
volatile size_t radio_len;
/* Values a device would read from its sensors and clock. */
volatile uint32_t tokens_in = 2894, tokens_out = 987;
volatile int64_t now_ms = 1748282246708LL;
#if defined(DEVICE_NUMBER)
/* Costs in dollars, as a device computes them (price x tokens). */
volatile double cost_in = 0.0004341, cost_out = 0.009,
	cost_total = 0.009434099999999999;
#elif defined(DEVICE_DEC)
/* The same costs in integer units of 10^-7 dollars. */
volatile int64_t cost_in_e7 = 4341, cost_out_e7 = 90000;
#endif

/* Builds one update and sends it. */
int main(void)
{
#if defined(BASELINE)
	radio_buf = out;
	radio_len = (size_t)(tokens_in + tokens_out + (uint32_t)now_ms);
#elif defined(NANOPB)
	sessionwire_v1_Session s = sessionwire_v1_Session_init_zero;
	pb_ostream_t os = pb_ostream_from_buffer(out, sizeof(out));
	int64_t t = now_ms;

	s.which_external_id = sessionwire_v1_Session_external_id_text_tag;
	__builtin_memcpy(s.external_id.external_id_text, "dev-a8346607363a", 17);
	s.which_duration = sessionwire_v1_Session_duration_int_tag;
	s.duration.duration_int = 1358072;
	s.has_usage = true;
	s.usage.which_prompt_tokens = sessionwire_v1_Usage_prompt_tokens_int_tag;
	s.usage.prompt_tokens.prompt_tokens_int = tokens_in;
	s.usage.which_completion_tokens =
		sessionwire_v1_Usage_completion_tokens_int_tag;
	s.usage.completion_tokens.completion_tokens_int = tokens_out;
	s.which_traces_count = sessionwire_v1_Session_traces_count_int_tag;
	s.traces_count.traces_count_int = 171;
	s.tags_count = 1;
	__builtin_memcpy(s.tags[0], "edge", 5);
	s.has_started_at = true;
	s.started_at = t;
	/* updated_at = started_at + duration, as sw_pb_encode writes it. */
	s.has_flags = true;
	s.flags = sessionwire_v1_Flag_FLAG_UPDATED_AT_IS_END;
	if (!pb_encode(&os, sessionwire_v1_Session_fields, &s))
		return 1;
	radio_buf = out;
	radio_len = os.bytes_written;
#elif defined(DEVICE) || defined(DEVICE_DEC) || defined(DEVICE_NUMBER)
	static const sw_str tags[1] = { { "edge", 4 } };
	sw_dev w;
	size_t len;
	int64_t t = now_ms;

	sw_dev_begin(&w, out, sizeof(out));
	sw_dev_time(&w, SW_DEV_STARTED_AT, t);
	sw_dev_id(&w, SW_DEV_EXTERNAL_ID, "dev-a8346607363a", 16);
	sw_dev_count(&w, SW_DEV_DURATION, 1358072);
#if defined(DEVICE_DEC)
	/* in units of 10^-7 dollars: 0.0004341, 0.009 and their sum */
	sw_dev_trio_dec(&w, SW_DEV_BILLING, cost_in_e7, cost_out_e7,
			cost_in_e7 + cost_out_e7, 7);
#elif defined(DEVICE_NUMBER)
	sw_dev_trio_number(&w, SW_DEV_BILLING, cost_in, cost_out, cost_total);
#endif
	sw_dev_trio(&w, SW_DEV_USAGE, tokens_in, tokens_out,
		    (int64_t)tokens_in + tokens_out);
	sw_dev_count(&w, SW_DEV_TRACES_COUNT, 171);
	sw_dev_list(&w, SW_DEV_TAGS, tags, 1);
	sw_dev_time(&w, SW_DEV_UPDATED_AT, t + 1358072);
	if (sw_dev_end(&w, &len) != SW_OK)
		return 1;
	radio_buf = out;
	radio_len = len;
#else
	static const sw_str tags[1] = { { "edge", 4 } };
	sw_update u;
	size_t len;
	int64_t t = now_ms;

	sw_update_init(&u);
	sw_update_set_external_id(&u, "dev-a8346607363a", 16);
	sw_update_set_duration(&u, 1358072);
	sw_update_set_usage(&u, tokens_in, tokens_out,
			    (double)tokens_in + tokens_out);
	sw_update_set_traces_count(&u, 171);
	sw_update_set_tags(&u, tags, 1);
	sw_update_set_started_at(&u, t);
	sw_update_set_updated_at(&u, t + 1358072);
	if (sw_pb_encode(&u, out, sizeof(out), &len, NULL) != SW_OK)
		return 1;
	radio_buf = out;
	radio_len = len;
#endif
	return 0;
}
