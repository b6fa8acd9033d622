-- wrk script for POST /v1/decide: a fresh body per request, 500 random candidates out of
-- ITEMS catalog items, a known person three times out of four (args: items, users, token).
local items, users, token = 100000, 2000, "bench-admin-key-0123456789abcdef"
local counter = 0

function init(args)
   items = tonumber(args[1] or items)
   users = tonumber(args[2] or users)
   token = args[3] or token
   math.randomseed(os.time() + (wrk.thread and 1 or 0))
end

function request()
   counter = counter + 1
   local parts = {}
   for i = 1, 500 do
      parts[i] = '"i' .. math.random(0, items - 1) .. '"'
   end
   local user = '{}'
   if counter % 4 ~= 0 then
      user = '{"user_id":"u' .. math.random(0, users - 1) .. '"}'
   end
   local body = '{"placement":"home","k":10,"user":' .. user
      .. ',"context":{"item_id":"i' .. math.random(0, items - 1) .. '","region":"US"},'
      .. '"candidates":[' .. table.concat(parts, ",") .. ']}'
   return wrk.format("POST", "/v1/decide",
      {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end

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
