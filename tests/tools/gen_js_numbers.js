#!/usr/bin/env node
// gen_js_numbers.js - writes tests/data/js_numbers.tsv: doubles with the
// string JavaScript's String(x) gives for them, one per line:
//   <16 hex digits of the IEEE-754 bits>\t<String(x)>
// Deterministic (seeded splitmix64), so re-running gives the same file.
// Usage: node tests/tools/gen_js_numbers.js > tests/data/js_numbers.tsv
'use strict';

const M64 = (1n << 64n) - 1n;
let state = 0x5e5510e1f1a5c0deb0bn & M64;

// splitmix64: the next 64-bit pseudo-random BigInt.
function next64() {
	state = (state + 0x9e3779b97f4a7c15n) & M64;
	let z = state;
	z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
	z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
	return z ^ (z >> 31n);
}

// Uniform integer in [0, n) for small n.
function below(n) {
	return Number(next64() % BigInt(n));
}

const dv = new DataView(new ArrayBuffer(8));

function bitsOf(x) {
	dv.setFloat64(0, x);
	return dv.getBigUint64(0);
}

function fromBits(b) {
	dv.setBigUint64(0, b & M64);
	return dv.getFloat64(0);
}

// Next representable double toward +Inf (d = 1) or -Inf (d = -1).
function nextafter(x, d) {
	if (x === 0)
		return d > 0 ? 5e-324 : -5e-324;
	const b = bitsOf(x);
	const up = (x > 0) === (d > 0);
	return fromBits(up ? b + 1n : b - 1n);
}

const seen = new Set();
const lines = [];

function add(x) {
	if (!Number.isFinite(x))
		return;
	const b = bitsOf(x);
	if (seen.has(b))
		return;
	seen.add(b);
	lines.push(b.toString(16).padStart(16, '0') + '\t' + String(x));
}

// x, its neighbours up to k ulps away, and the negatives of all.
function addAround(x, k) {
	let lo = x, hi = x;
	add(x);
	add(-x);
	for (let i = 0; i < k; i++) {
		lo = nextafter(lo, -1);
		hi = nextafter(hi, 1);
		add(lo); add(-lo);
		add(hi); add(-hi);
	}
}

// Special values.
add(0); add(-0); add(5e-324); add(-5e-324);
add(Number.MAX_VALUE); add(-Number.MAX_VALUE);
add(Number.MIN_VALUE * 2); add(0.1); add(0.2); add(0.1 + 0.2);
add(2.2250738585072014e-308); add(2.225073858507201e-308);
add(1 / 3); add(2 / 3); add(Math.PI); add(Math.E);

// Random 64-bit patterns (NaN and Inf skipped by add).
for (let i = 0; i < 9000; i++)
	add(fromBits(next64()));

// Random decimals: 1-17 significant digits, exponents -30..30.
for (let i = 0; i < 9000; i++) {
	const nd = 1 + below(17);
	let digits = String(1 + below(9));
	for (let k = 1; k < nd; k++)
		digits += String(below(10));
	const e = below(61) - 30;
	const x = Number(digits[0] + '.' + digits.slice(1) + 'e' + e);
	add(below(4) === 0 ? -x : x);
}

// Integers around 2^31, 2^32, 2^53, 2^63, 2^64 and their ulp neighbours.
for (const p of [31n, 32n, 53n, 54n, 63n, 64n]) {
	const c = 1n << p;
	for (let k = -40n; k <= 40n; k++)
		add(Number(c + k)), add(-Number(c + k));
	addAround(Number(c), 20);
}
// Random integers below 2^53 (fast path) and between 2^53 and 2^80.
for (let i = 0; i < 2000; i++) {
	add(Number(next64() >> BigInt(11 + below(53))));
	add(-Number(next64() >> BigInt(11 + below(53))));
	add(Number(next64() << BigInt(below(17))));
}

// Powers of ten 1e-330..1e308 with neighbours.
for (let e = -330; e <= 308; e++)
	addAround(Number('1e' + e), 1);
// Notation boundaries: 1e-7 and 1e21 (and 1e-6, 1e20) with many ulps.
for (const x of [1e-7, 1e-6, 1e20, 1e21])
	addAround(x, 40);
for (const s of ['9.99999999999999e-8', '1.0000000000000001e-7', '1.5e-7',
		 '9.999999999999999e20', '999999999999999900000',
		 '1.0000000000000001e21', '123456789012345678901',
		 '0.000001', '0.0000012345678901234567', '1.2345678901234567e-7'])
	addAround(Number(s), 3);

// Subnormals: the smallest, the largest, random ones; the smallest normal.
addAround(5e-324, 30);
addAround(fromBits(0x000fffffffffffffn), 30);
addAround(fromBits(0x0010000000000000n), 30);
for (let i = 0; i < 1000; i++) {
	const b = next64() & 0x000fffffffffffffn;
	add(fromBits(b));
	add(-fromBits(b));
}

// Costs and token counts: n * 1e-6, prices per token times counts.
const prices = [1e-6, 2.5e-6, 3e-6, 1.5e-5, 6e-5, 1.25e-7, 0.000015, 0.00003];
for (let i = 0; i < 4000; i++) {
	const n = below(i < 2000 ? 10000 : 5000000);
	add(n * 1e-6);
	add(n * prices[below(prices.length)]);
	if (i < 1500)
		add(n * prices[below(prices.length)] + below(1000) * 1e-6);
}
for (let n = 0; n <= 2000; n++)
	add(n * 1e-6);

process.stdout.write(lines.join('\n') + '\n');
