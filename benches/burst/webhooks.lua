-- wrk script: every request is a valid KeyCRM status-change webhook in KeyCRM's full shape (about
-- 1.3 KB), as a burst of mass status changes sends them. Each wrk thread moves its own orders through statuses 1..4; the n-th
-- request of a thread moves order (n mod ORDERS) of that thread, with a status_changed_at one
-- millisecond after its previous one, so no request repeats another.
--
--   wrk -t2 -c64 -d60s --latency -s benches/burst/webhooks.lua 'http://127.0.0.1:PORT/webhooks/keycrm/SLUG?token=SECRET'
--
-- ORDERS per thread (environment KSA_BURST_ORDERS, default 20000). KSA_BURST_EVENTS_PER_ORDER
-- (default 0: never) retires a thread's orders after that many status changes each: the next
-- round moves ORDERS new ones, as a shop's orders come and close, so a long burst does not pile
-- ever more events onto the same orders (each event re-derives its order from all of them).

local threads = {}
local counter = 1

function setup(thread)
   thread:set("thread_no", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local orders = tonumber(os.getenv("KSA_BURST_ORDERS") or "20000")
local events_per_order = tonumber(os.getenv("KSA_BURST_EVENTS_PER_ORDER") or "0")
local start = os.time()
local n = 0

local function stamp(ms)
   local seconds = start + math.floor(ms / 1000)
   return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%03d000Z", ms % 1000)
end

-- The timestamps change once per round: formatted once, not per request (wrk shares the
-- machine's cores with the server it loads).
local created = stamp(0)
local stamped_round, changed = -1, nil

function request()
   n = n + 1
   local round = math.floor((n - 1) / orders)
   local generation = events_per_order > 0 and math.floor(round / events_per_order) or 0
   local id = thread_no * 100000000 + generation * orders + ((n - 1) % orders) + 1
   local status = (round % 4) + 1
   if round ~= stamped_round then
      stamped_round, changed = round, stamp(round * 1000 + thread_no)
   end
   local body = string.format(
      '{"event":"order.change_order_status","context":{"id":%d,"parent_id":null,"source_uuid":"№%d",' ..
      '"global_source_uuid":"58210%d","status_on_source":"new","source_id":3,"client_id":%d,"manager_id":6,' ..
      '"grand_total":245,"total_discount":0,"margin_sum":245,"expenses_sum":0,"discount_amount":null,' ..
      '"discount_percent":null,"shipping_price":"0.00","taxes":null,"register_id":null,"fiscal_result":[],' ..
      '"fiscal_status":null,"shipping_type_id":null,"status_group_id":%d,"status_id":%d,"closed_from":null,' ..
      '"status_changed_at":"%s","status_expired_at":null,' ..
      '"manager_comment":"Доставка: Нова Пошта, відділення 12. Тел. +380500000000","client_comment":null,' ..
      '"discount_data":[],"is_gift":false,"promocode":null,"wrap_price":null,"gift_wrap":false,' ..
      '"payment_status":"not_paid","gift_message":null,"last_synced_at":null,"created_at":"%s","updated_at":"%s",' ..
      '"closed_at":null,"deleted_at":null,"ordered_at":"%s","source_updated_at":null,"payments_total":0,' ..
      '"products_total":245,"is_expired":false,"has_reserves":false}}',
      id, id, id, 20000 + id % 5000, status, status, changed, created, changed, created)
   return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
