-- wrk script for plain GETs (the trivial-endpoint ceiling): only reports, like wrk_batch.lua.
function done(summary, latency, requests)
   local out = string.format(
      '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,'
         .. '"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,'
         .. '"max":%d,"mean":%.1f}}',
      summary.requests, summary.duration, summary.bytes, summary.errors.connect,
      summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean)
   io.write("WRKJSON " .. out .. "\n")
end
