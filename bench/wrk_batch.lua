-- wrk script: POST /v1/batch with 100 realistic, mixed Segment messages per request.
--
-- Every request gets a freshly built body whose messageIds are unique across threads,
-- requests and runs (run nonce .. thread id .. request counter .. index), so the server's
-- dedupe never short-cuts a write. Users start anonymous, get identified (identify with both
-- ids and traits), then send tracks/pages carrying both ids.
--
-- With IDS = "uuid", each messageId is a random version-4 UUID instead, as the Segment and
-- RudderStack SDKs make them: the log's dedupe index then takes each insert on a random page
-- (BENCHMARKS.md, ingest: what that costs).
--
-- Usage: wrk -s bench/wrk_batch.lua -H "Authorization: Basic ..." URL -- NONCE [USERS] [SIZE] [IDS]
-- done() prints one line "WRKJSON {...}" with requests, duration, errors and latency
-- percentiles (microseconds) for bench/ingest_http.py to parse.

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("tid", next_id)
   table.insert(threads, thread)
end

local nonce, users, size, uuids
local counter = 0
local identified = {}
local anon_gen = {}

local events = {
   "Product Viewed", "Product Viewed", "Product Viewed", "Product Added", "Products Searched",
   "Checkout Started", "Order Completed", "Video Played", "Signed In",
}
local pages = { "Home", "Pricing", "Docs", "Blog", "Product", "Cart", "Checkout", "About" }
local plans = { "free", "pro", "team", "enterprise" }
local locales = { "en-US", "fr-FR", "de-DE", "es-ES" }
local categories = { "shoes", "shirts", "bags", "hats" }

function init(args)
   nonce = args[1] or tostring(os.time())
   users = tonumber(args[2] or "50000")
   size = tonumber(args[3] or "100")
   uuids = args[4] == "uuid"
   -- the run's nonce too: two runs in the same second must not draw the same UUIDs
   math.randomseed(os.time() * 1000 + (tid or 0) + (tonumber(string.sub(nonce, 1, 6), 16) or 0))
   wrk.method = "POST"
   wrk.path = "/v1/batch"
   wrk.headers["Content-Type"] = "application/json"
end

local function iso(t, ms)
   return os.date("!%Y-%m-%dT%H:%M:%S", t) .. string.format(".%03dZ", ms)
end

local function context(page)
   local p = string.lower(page)
   return string.format(
      '"context":{"library":{"name":"analytics.js","version":"5.2.1"},'
         .. '"ip":"10.%d.%d.%d","locale":"%s",'
         .. '"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
         .. 'Chrome/124.0 Safari/537.36",'
         .. '"page":{"path":"/%s","url":"https://shop.example.com/%s","title":"%s | Example Shop",'
         .. '"referrer":"https://www.google.com/"}}',
      math.random(0, 255), math.random(0, 255), math.random(0, 255),
      locales[math.random(#locales)], p, p, page)
end

local function uuid4()
   local r = math.random
   return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x", r(0, 65535), r(0, 65535),
      r(0, 65535), r(0, 4095), r(32768, 49151), r(0, 65535), r(0, 65535), r(0, 65535))
end

local function message(i, now, ms)
   local u = math.random(users)
   local page = pages[math.random(#pages)]
   local mid
   if uuids then
      mid = string.format('"messageId":"%s"', uuid4())
   else
      mid = string.format('"messageId":"%s-%d-%d-%d"', nonce, tid, counter, i)
   end
   local ts = iso(now, ms)
   local gen = anon_gen[u] or 0
   local aid = string.format('"anonymousId":"anon-%d-%d-%d"', tid, u, gen)
   local roll = math.random()
   if identified[u] and roll < 0.02 then
      anon_gen[u] = gen + 1 -- a new device: anonymous again
      identified[u] = false
      aid = string.format('"anonymousId":"anon-%d-%d-%d"', tid, u, gen + 1)
   end
   local ids = aid
   if identified[u] then
      ids = string.format('%s,"userId":"user-%d-%d"', aid, tid, u)
   end
   local head = string.format('{%s,"timestamp":"%s","sentAt":"%s",', mid, ts, ts)
   if not identified[u] and roll < 0.15 then
      identified[u] = true
      return head .. string.format(
         '"type":"identify",%s,"userId":"user-%d-%d","traits":{"email":"user%d@example.com",'
            .. '"name":"User %d","plan":"%s","country":"FR","createdAt":"%s"},%s}',
         aid, tid, u, u, u, plans[math.random(#plans)], iso(now - 86400 * 30, 0), context(page))
   end
   if roll < 0.45 then
      return head .. string.format(
         '"type":"page",%s,"name":"%s","properties":{"path":"/%s","search":"","width":1280},%s}',
         ids, page, string.lower(page), context(page))
   end
   local name = events[math.random(#events)]
   return head .. string.format(
      '"type":"track",%s,"event":"%s","properties":{"product_id":"sku-%d","category":"%s",'
         .. '"price":%d.%02d,"currency":"EUR"},%s}',
      ids, name, math.random(5000), categories[math.random(#categories)],
      math.random(5, 300), math.random(0, 99), context(page))
end

function request()
   counter = counter + 1
   local now = os.time()
   local parts = {}
   for i = 1, size do
      parts[i] = message(i, now, (counter + i) % 1000)
   end
   local body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
   return wrk.format(nil, nil, nil, body)
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
