#!/usr/bin/env node
// gen_js_dates.js - writes tests/data/js_dates.tsv: UTC milliseconds with
// JavaScript's new Date(ms).toISOString(), one per line:
//   <ms>\t<YYYY-MM-DDTHH:MM:SS.sssZ>
// Covers 0000-01-01 to 9999-12-31 (random, seeded) plus edge values.
// Usage: node tests/tools/gen_js_dates.js > tests/data/js_dates.tsv
'use strict';

const MIN = -62167219200000; // 0000-01-01T00:00:00.000Z
const MAX = 253402300799999; // 9999-12-31T23:59:59.999Z
const M64 = (1n << 64n) - 1n;
let state = 0xda7e5da7e5n;

// splitmix64: the next 64-bit pseudo-random BigInt.
function next64() {
	state = (state + 0x9e3779b97f4a7c15n) & M64;
	let z = state;
	z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
	z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
	return z ^ (z >> 31n);
}

// Uniform integer in [lo, hi].
function between(lo, hi) {
	return lo + Number(next64() % BigInt(hi - lo + 1));
}

const seen = new Set();
const lines = [];

function add(ms) {
	if (ms < MIN || ms > MAX || seen.has(ms))
		return;
	seen.add(ms);
	lines.push(ms + '\t' + new Date(ms).toISOString());
}

// ms and its neighbours up to k ms away.
function around(ms, k) {
	for (let i = -k; i <= k; i++)
		add(ms + i);
}

around(MIN, 3);
around(MAX, 3);
around(0, 3);
// Start of every year that tests the leap rules and the era arithmetic.
// (Date.UTC maps years 0..99 to 1900..1999: those come below.)
for (const y of [100, 101, 399, 400, 401, 1600, 1700, 1800,
		 1899, 1900, 1969, 1970, 1971, 1972, 2000, 2001, 2024, 2100,
		 2400, 9999])
	around(Date.UTC(y, 0, 1), 1);
// Years 0..99 through setUTCFullYear.
for (const y of [0, 1, 4, 99]) {
	const d = new Date(0);
	d.setUTCFullYear(y, 0, 1);
	around(d.getTime(), 1);
	d.setUTCFullYear(y, 1, 29); // Feb 29 (rolls to Mar 1 if not leap)
	around(d.getTime(), 1);
	d.setUTCFullYear(y, 2, 1);
	around(d.getTime() - 1, 0);
}
// Leap days and the day after Feb 28 in leap and common years.
for (const y of [1600, 1700, 1900, 1904, 1996, 2000, 2004, 2100, 2400, 9996]) {
	around(Date.UTC(y, 1, 28, 23, 59, 59, 999), 1);
	around(Date.UTC(y, 2, 1), 1);
}
// Random over the whole range, and denser near today.
for (let i = 0; i < 4000; i++)
	add(between(MIN, MAX));
for (let i = 0; i < 1000; i++)
	add(between(1500000000000, 2000000000000));
// Random negative ms near 1970 (floor division).
for (let i = 0; i < 200; i++)
	add(-between(1, 100000000));

process.stdout.write(lines.join('\n') + '\n');
