-- bench/ingress.sh's request: PATCH with a 150-byte body and about 250
-- bytes of headers, as a device's protobuf update; prints one RESULT line.
wrk.method = "PATCH"
wrk.path = "/v2/traces/sessions/s-0123456789abcdef"
wrk.body = string.rep("\8\1\18\32", 37) .. "\0\0"
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Accept"] = "application/x-protobuf"
wrk.headers["Authorization"] = "Bearer dev-0123456789abcdef0123456789abcdef"
wrk.headers["User-Agent"] = "sessionwire-bench/1"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT reqs=%d rps=%.0f p99_us=%d bad=%d\n",
    summary.requests, summary.requests / summary.duration * 1e6,
    latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
