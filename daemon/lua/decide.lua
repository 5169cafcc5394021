-- decide.lua: alertd's incident model in Redis (docs/redis.md).
--
-- One script, called with 0 KEYS (alertd uses one Redis instance, not a
-- cluster; every key is built here from the prefix), dispatching on
-- ARGV[1]:
--
--   decide  prefix event_id source_id kind zone label type class base
--           now_ms now_iso idem_ttl_s has_location lat lon changes_maxlen
--     -> {outcome, original_outcome, incident_id, priority, accept_seq,
--         opened, version, first_seen_ms, snapshot_json, change_id}
--        every element a string; for a duplicate snapshot_json and
--        change_id are "" and the rest is the first delivery's result.
--   queue   prefix limit
--     -> one string: JSON array of the open incidents' snapshots in queue
--        order (limit <= 0: all of them).
--   get     prefix incident_id
--     -> the snapshot JSON string, or nil when there is no such incident.
--
-- Issue 3 (docs/prioritisation.md): decide takes an optional 18th
-- argument, the rules JSON (priority modifiers, night flag, repeat boost,
-- aging, flood limits, unknown-source policy, supervision intervals).
-- Without it decide behaves as above (base priority only). With it:
--     a refused event answers {"refused", code, retry_after_ms} and writes
--     nothing (code unknown_source or rate_limited);
--     a heartbeat answers outcome merged with incident_id "0" and makes no
--     incident;
--     the reply may carry extra elements after the tenth:
--       "quiet", "1"   the change is not published (flood): change_id ""
--       "resolved", id, from_state, version, snapshot_json, change_id
--                      the source's device_offline incident was resolved.
--   age     prefix now_ms rules_json limit changes_maxlen
--     -> {id, snapshot_json, change_id, ...} of the incidents whose aging
--        step changed (the due ones of P aging, at most limit).
--   sweep   prefix now_ms now_iso rules_json limit changes_maxlen
--     -> {id, snapshot_json, change_id, last_seen_ms, ...} of the
--        device_offline incidents opened for the overdue sources of
--        P supervise (at most limit).
--
-- Numbers are handed back as decimal strings: a Lua number becomes a Redis
-- integer reply by truncation, and tostring() switches to exponent notation
-- beyond 14 digits.

local mode = ARGV[1]
local P = ARGV[2]

local QUEUE_EPOCH_MS = 1700000000000
local QUEUE_SPAN = 1000000000000 -- 1e12 ms of first_seen, about 31 years

local function fail(msg)
	return redis.error_reply('ERR alertd decide.lua: ' .. msg)
end

-- Integral decimal text of a number ("17", never "17.0" or "1.7e+01").
local function int(n)
	return string.format('%d', n)
end

local function clamp(n, lo, hi)
	if n < lo then return lo end
	if n > hi then return hi end
	return n
end

local function is_uint(s)
	return type(s) == 'string' and string.match(s, '^%d+$') ~= nil
end

-- A hash as a table, or nil when the key does not exist.
local function hgetall(key)
	local flat = redis.call('HGETALL', key)
	if #flat == 0 then
		return nil
	end
	local h = {}
	for i = 1, #flat, 2 do
		h[flat[i]] = flat[i + 1]
	end
	return h
end

local function hsetall(key, h)
	local flat = {}
	for k, v in pairs(h) do
		flat[#flat + 1] = k
		flat[#flat + 1] = v
	end
	redis.call('HSET', key, unpack(flat))
end

-- JSON text of a stored integer field (0 when absent).
local function json_int(v)
	return int(tonumber(v) or 0)
end

-- JSON text of an optional stored string ("" or absent: null).
local function json_opt(v)
	if v == nil or v == '' then
		return 'null'
	end
	return cjson.encode(v)
end

-- The incident snapshot of the contract (docs/api.md), members in a fixed
-- order. Every mode builds snapshots here and nowhere else.
local function snapshot(h)
	local loc = 'null'
	if h.lat ~= nil and h.lat ~= '' and h.lon ~= nil and h.lon ~= '' then
		loc = '{"lat":' .. cjson.encode(tonumber(h.lat)) ..
			',"lon":' .. cjson.encode(tonumber(h.lon)) .. '}'
	end
	return '{"id":' .. json_int(h.id) ..
		',"state":' .. cjson.encode(h.state or 'new') ..
		',"priority":' .. json_int(h.priority) ..
		',"type":' .. cjson.encode(h.type or '') ..
		',"source":{"id":' .. cjson.encode(h.source_id or '') ..
		',"kind":' .. cjson.encode(h.kind or '') ..
		',"zone":' .. json_opt(h.zone) ..
		',"label":' .. json_opt(h.label) .. '}' ..
		',"count":' .. json_int(h.count) ..
		',"first_seen":' .. cjson.encode(h.first_seen or '') ..
		',"last_seen":' .. cjson.encode(h.last_seen or '') ..
		',"location":' .. loc ..
		',"escalation_level":' .. json_int(h.escalation_level) ..
		',"acked_by":' .. json_opt(h.acked_by) ..
		',"version":' .. json_int(h.version) ..
		(h.flooding == '1' and ',"flooding":true' or '') .. '}'
end

-- ZSET score: priority first (descending with ZREVRANGE), then the older
-- first_seen first. priority * 1e12 + (1e12 - 1 - (first_seen_ms - epoch))
-- stays below 2^53, so it is exact in a double; formatted with %.0f because
-- tostring() would round it to 14 digits.
local function queue_score(priority, first_seen_ms)
	local p = clamp(priority, 0, 999)
	local off = clamp(first_seen_ms - QUEUE_EPOCH_MS, 0, QUEUE_SPAN - 1)
	return string.format('%.0f', p * QUEUE_SPAN + (QUEUE_SPAN - 1 - off))
end

-- ---- Issue 3: priority rules, flood control, registry, supervision ----

-- priority = type_base + mod + repeat + aging, clamped to 0..999:
--   mod    kind and zone modifiers and the night boost, the highest seen
--          over the incident's events (docs/prioritisation.md)
--   repeat repeat_step per event after the first, capped at repeat_cap
--   aging  aging_step per aging_interval_ms while state is new, capped;
--          re-applied by mode age, driven by P aging (due times)
local function rules_static_mod(R, kind, zone, night_applies)
	local m = tonumber((R.kind_mod or {})[kind]) or 0
	if zone ~= nil and zone ~= '' then
		m = m + (tonumber((R.zone_mod or {})[zone]) or 0)
	end
	if night_applies and R.night == 1 and (R.night_kinds or {})[kind] then
		m = m + (tonumber(R.night_boost) or 0)
	end
	return m
end

local function rules_priority(h)
	return int(clamp((tonumber(h.type_base) or 0) + (tonumber(h.mod) or 0) +
		(tonumber(h.rep) or 0) + (tonumber(h.aging) or 0), 0, 999))
end

-- The aging of h at now (0 unless unacknowledged and aging is on).
local function rules_aging(R, h, now)
	local step = tonumber(R.aging_step) or 0
	local iv = tonumber(R.aging_interval_ms) or 0
	if step <= 0 or iv <= 0 or h.state ~= 'new' then
		return 0, nil
	end
	local n = math.floor((now - tonumber(h.first_seen_ms)) / iv)
	if n < 0 then n = 0 end
	local a = math.min(tonumber(R.aging_cap) or 0, n * step)
	local next_due = nil
	if a < (tonumber(R.aging_cap) or 0) then
		next_due = tonumber(h.first_seen_ms) + (n + 1) * iv
	end
	return a, next_due
end

local function rules_apply(R, h, kind, zone, count, now, key_aging)
	local m = rules_static_mod(R, kind, zone, true)
	if h.mod ~= nil and tonumber(h.mod) > m then
		m = tonumber(h.mod)
	end
	h.mod = int(m)
	local cap = tonumber(R.repeat_cap) or 0
	h.rep = int(math.min(cap, (tonumber(R.repeat_step) or 0) * (count - 1)))
	-- Aging stops at acknowledgement: an acknowledged incident keeps
	-- what it had gained.
	local a, due = rules_aging(R, h, now)
	if h.state == 'new' then
		h.aging = int(a)
	end
	h.priority = rules_priority(h)
	if due then
		redis.call('ZADD', key_aging, string.format('%.0f', due), h.id)
	else
		redis.call('ZREM', key_aging, h.id)
	end
end

-- Per-source flood control: a fixed window of flood_window_ms per source.
-- Returns the count in this window including this event, or nil and the
-- ms until the window ends when the event is over the hard limit (then
-- nothing is written).
local function rules_flood(R, source_id, now)
	local win = tonumber(R.flood_window_ms) or 0
	local hard = tonumber(R.flood_hard) or 0
	if win <= 0 or hard <= 0 then
		return 0
	end
	local w = math.floor(now / win)
	local key = P .. 'rate:' .. source_id .. ':' .. int(w)
	local n = (tonumber(redis.call('GET', key)) or 0) + 1
	if n > hard then
		return nil, (w + 1) * win - now
	end
	redis.call('INCR', key)
	redis.call('PEXPIRE', key, int(2 * win))
	return n
end

-- The source was heard: last-seen, next supervision due time, and the
-- resolution of its device_offline incident. Returns the reply extension
-- of a resolution, or nil.
local function rules_heard(R, src, source_id, now_ms, now_iso, maxlen)
	local skey = P .. 'src:' .. source_id
	redis.call('HSET', skey, 'last_seen_ms', now_ms, 'last_seen', now_iso,
		'state', 'online')
	local iv = tonumber(src.interval_s)
	if iv == nil then
		iv = tonumber((R.supervision or {})[src.kind or '']) or 0
	end
	if iv > 0 then
		redis.call('ZADD', P .. 'supervise',
			string.format('%.0f', tonumber(now_ms) + iv * 1000), source_id)
	else
		redis.call('ZREM', P .. 'supervise', source_id)
	end
	local okey = P .. 'open:' .. source_id .. ':device_offline'
	local id = redis.call('GET', okey)
	if not id then
		return nil
	end
	redis.call('DEL', okey)
	local ikey = P .. 'inc:' .. id
	local h = hgetall(ikey)
	if not h or h.state == 'resolved' then
		return nil
	end
	local from = h.state
	h.state = 'resolved'
	h.resolved_at = now_iso
	h.version = int((tonumber(h.version) or 0) + 1)
	hsetall(ikey, h)
	redis.call('ZREM', P .. 'queue', id)
	redis.call('ZREM', P .. 'aging', id)
	local snap = snapshot(h)
	local cid = redis.call('XADD', P .. 'changes', 'MAXLEN', '~',
		int(maxlen), '*', 'incident', id, 'snapshot', snap)
	return {'resolved', id, from, h.version, snap, cid}
end

local function append_all(t, more)
	if more then
		for _, v in ipairs(more) do
			t[#t + 1] = v
		end
	end
	return t
end

local function mode_age()
	local now = tonumber(ARGV[3])
	local R = cjson.decode(ARGV[4] or '{}')
	local limit, maxlen = tonumber(ARGV[5]), tonumber(ARGV[6])
	if now == nil or limit == nil or maxlen == nil then
		return fail('age wants now_ms rules limit changes_maxlen')
	end
	local key_aging = P .. 'aging'
	local due = redis.call('ZRANGEBYSCORE', key_aging, '-inf',
		string.format('%.0f', now), 'LIMIT', 0, math.floor(limit))
	local out = {}
	for _, id in ipairs(due) do
		local ikey = P .. 'inc:' .. id
		local h = hgetall(ikey)
		local a, next_due = 0, nil
		if h then
			a, next_due = rules_aging(R, h, now)
		end
		if next_due then
			redis.call('ZADD', key_aging,
				string.format('%.0f', next_due), id)
		else
			redis.call('ZREM', key_aging, id)
		end
		if h and h.state == 'new' and int(a) ~= (h.aging or '0') then
			h.aging = int(a)
			h.priority = rules_priority(h)
			h.version = int((tonumber(h.version) or 0) + 1)
			hsetall(ikey, h)
			redis.call('ZADD', P .. 'queue', queue_score(
				tonumber(h.priority), tonumber(h.first_seen_ms)), id)
			local snap = snapshot(h)
			local cid = redis.call('XADD', P .. 'changes', 'MAXLEN',
				'~', int(maxlen), '*', 'incident', id,
				'snapshot', snap)
			append_all(out, {id, snap, cid})
		end
	end
	return out
end

local function mode_sweep()
	local now_ms, now_iso = ARGV[3], ARGV[4]
	local now = tonumber(now_ms)
	local R = cjson.decode(ARGV[5] or '{}')
	local limit, maxlen = tonumber(ARGV[6]), tonumber(ARGV[7])
	if now == nil or limit == nil or maxlen == nil then
		return fail('sweep wants now_ms now_iso rules limit changes_maxlen')
	end
	local due = redis.call('ZRANGEBYSCORE', P .. 'supervise', '-inf',
		string.format('%.0f', now), 'LIMIT', 0, math.floor(limit))
	local out = {}
	for _, source_id in ipairs(due) do
		-- Once per silence: the next heartbeat puts it back.
		redis.call('ZREM', P .. 'supervise', source_id)
		local skey = P .. 'src:' .. source_id
		local src = hgetall(skey)
		local okey = P .. 'open:' .. source_id .. ':device_offline'
		local iv = 0
		if src then
			iv = tonumber(src.interval_s) or
				tonumber((R.supervision or {})[src.kind or '']) or 0
		end
		-- iv 0: supervision was turned off since the due time was set.
		if src and iv > 0 and not redis.call('GET', okey) then
			local id = int(redis.call('INCR', P .. 'seq:incident'))
			local kind = src.kind or 'other'
			local base = clamp(tonumber(R.device_offline) or 0, 0, 999)
			local h = {
				id = id, state = 'new', type = 'device_offline',
				type_base = int(base), class = 'device_offline',
				source_id = source_id, kind = kind, count = '1',
				first_seen = now_iso, first_seen_ms = now_ms,
				last_seen = now_iso, last_seen_ms = now_ms,
				escalation_level = '0', version = '1', rep = '0',
				aging = '0',
				mod = int(rules_static_mod(R, kind, src.zone, false)),
			}
			if src.zone and src.zone ~= '' then h.zone = src.zone end
			if src.label and src.label ~= '' then h.label = src.label end
			h.priority = rules_priority(h)
			hsetall(P .. 'inc:' .. id, h)
			redis.call('SET', okey, id)
			redis.call('HSET', skey, 'state', 'offline')
			redis.call('ZADD', P .. 'queue', queue_score(
				tonumber(h.priority), now), id)
			local _, next_due = rules_aging(R, h, now)
			if next_due then
				redis.call('ZADD', P .. 'aging',
					string.format('%.0f', next_due), id)
			end
			local snap = snapshot(h)
			local cid = redis.call('XADD', P .. 'changes', 'MAXLEN',
				'~', int(maxlen), '*', 'incident', id,
				'snapshot', snap)
			append_all(out, {id, snap, cid, src.last_seen_ms or ''})
		end
	end
	return out
end

local function mode_decide()
	if #ARGV ~= 17 and #ARGV ~= 18 then
		return fail('decide wants 17 or 18 arguments, got ' .. #ARGV)
	end
	local event_id, source_id, kind = ARGV[3], ARGV[4], ARGV[5]
	local zone, label, etype, class = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
	local base = tonumber(ARGV[10])
	local now_ms, now_iso = ARGV[11], ARGV[12]
	local ttl = tonumber(ARGV[13])
	local has_loc = ARGV[14] == '1'
	local lat, lon = ARGV[15], ARGV[16]
	local maxlen = tonumber(ARGV[17])
	if event_id == '' or source_id == '' or class == '' then
		return fail('empty event_id, source_id or class')
	end
	if base == nil or not is_uint(now_ms) or ttl == nil or ttl < 1 or
	    maxlen == nil or maxlen < 1 then
		return fail('bad base, now_ms, idem_ttl_s or changes_maxlen')
	end
	if has_loc and (tonumber(lat) == nil or tonumber(lon) == nil) then
		return fail('bad lat/lon')
	end
	base = clamp(math.floor(base), 0, 999)

	-- (a) idempotency: the same event_id answers the first result.
	local evt_key = P .. 'evt:' .. event_id
	local stored = redis.call('GET', evt_key)
	if stored then
		local o = cjson.decode(stored)
		return {'duplicate', o.outcome, o.incident_id, o.priority,
			o.accept_seq, o.opened, o.version, o.first_seen_ms,
			'', ''}
	end

	-- (a') issue 3 rules: registry, flood control, last-seen.
	local R, flood_n, extra = nil, 0, nil
	if #ARGV == 18 then
		R = cjson.decode(ARGV[18])
		local src = hgetall(P .. 'src:' .. source_id)
		-- Fail open while the registry is not loaded at all (Redis
		-- lost it; alertd reloads it from PostgreSQL): never refuse an
		-- alarm because the registry is missing.
		if not src and R.unknown ~= 'accept' and
		    redis.call('EXISTS', P .. 'sources') == 1 then
			return {'refused', 'unknown_source', '0'}
		end
		local retry_ms
		flood_n, retry_ms = rules_flood(R, source_id, tonumber(now_ms))
		if flood_n == nil then
			return {'refused', 'rate_limited', int(retry_ms)}
		end
		if src then
			if src.kind and src.kind ~= '' then kind = src.kind end
			if src.zone and src.zone ~= '' then zone = src.zone end
			if src.label and src.label ~= '' then label = src.label end
			extra = rules_heard(R, src, source_id, now_ms, now_iso,
				maxlen)
		end
		if etype == 'heartbeat' then
			-- Supervision only: no incident (docs/api.md).
			local seq = int(redis.call('INCR', P .. 'seq:accept'))
			redis.call('SET', evt_key, cjson.encode({
				outcome = 'merged', incident_id = '0',
				priority = '0', accept_seq = seq, opened = '0',
				version = '0', first_seen_ms = now_ms,
			}), 'EX', int(ttl))
			return append_all({'merged', 'merged', '0', '0', seq, '0',
				'0', now_ms, '', ''}, extra)
		end
	end

	-- (b) merge into the open incident of source + class, or open one.
	local open_key = P .. 'open:' .. source_id .. ':' .. class
	local id = redis.call('GET', open_key)
	local h = nil
	if id then
		h = hgetall(P .. 'inc:' .. id)
	end
	if h and h.state == 'resolved' then
		h = nil -- a stale open key: a resolved incident is never reopened
	end
	local outcome
	if h then
		outcome = 'merged'
		h.count = int((tonumber(h.count) or 0) + 1)
		h.priority = int(math.max(tonumber(h.priority) or 0, base))
		if base > (tonumber(h.type_base) or -1) then
			h.type = etype
			h.type_base = int(base)
		end
		h.version = int((tonumber(h.version) or 0) + 1)
	else
		outcome = 'new'
		id = int(redis.call('INCR', P .. 'seq:incident'))
		h = {
			id = id, state = 'new', priority = int(base),
			type = etype, type_base = int(base), class = class,
			source_id = source_id, count = '1',
			first_seen = now_iso, first_seen_ms = now_ms,
			escalation_level = '0', version = '1',
		}
		redis.call('SET', open_key, id)
	end
	h.kind = kind
	h.last_seen = now_iso
	h.last_seen_ms = now_ms
	if zone ~= '' then h.zone = zone end
	if label ~= '' then h.label = label end
	if has_loc then
		h.lat = lat
		h.lon = lon
	end
	local quiet = false
	if R then
		rules_apply(R, h, kind, zone, tonumber(h.count), tonumber(now_ms),
			P .. 'aging')
		local soft = tonumber(R.flood_soft) or 0
		local was = h.flooding == '1'
		if soft > 0 and flood_n > soft then
			h.flooding = '1'
			-- Published when the mark appears and every soft-th event.
			quiet = was and (flood_n % soft) ~= 0
		elseif was then
			h.flooding = '0'
		end
	end
	hsetall(P .. 'inc:' .. id, h)

	-- (c) accept sequence, (d) queue position.
	local accept_seq = int(redis.call('INCR', P .. 'seq:accept'))
	redis.call('ZADD', P .. 'queue',
		queue_score(tonumber(h.priority), tonumber(h.first_seen_ms)), id)

	-- (e) the idempotency record, with the result a retry gets.
	local opened = (outcome == 'new') and '1' or '0'
	redis.call('SET', evt_key, cjson.encode({
		outcome = outcome, incident_id = id, priority = h.priority,
		accept_seq = accept_seq, opened = opened, version = h.version,
		first_seen_ms = h.first_seen_ms,
	}), 'EX', int(ttl))

	-- (f) snapshot, (g) change record for the consoles' streams.
	local snap = snapshot(h)
	if quiet then
		return append_all({outcome, outcome, id, h.priority, accept_seq,
			opened, h.version, h.first_seen_ms, snap, '', 'quiet', '1'},
			extra)
	end
	local change_id = redis.call('XADD', P .. 'changes', 'MAXLEN', '~',
		int(maxlen), '*', 'incident', id, 'snapshot', snap)

	return append_all({outcome, outcome, id, h.priority, accept_seq, opened,
		h.version, h.first_seen_ms, snap, change_id}, extra)
end

local function mode_queue()
	local limit = tonumber(ARGV[3])
	if limit == nil then
		return fail('queue wants a numeric limit')
	end
	local stop = -1
	if limit > 0 then
		stop = math.floor(limit) - 1
	end
	local ids = redis.call('ZREVRANGE', P .. 'queue', 0, stop)
	local parts = {}
	for _, id in ipairs(ids) do
		local h = hgetall(P .. 'inc:' .. id)
		if h then
			parts[#parts + 1] = snapshot(h)
		end
	end
	return '[' .. table.concat(parts, ',') .. ']'
end

local function mode_get()
	local id = ARGV[3]
	if not is_uint(id) then
		return false
	end
	local h = hgetall(P .. 'inc:' .. id)
	if not h then
		return false
	end
	return snapshot(h)
end

if type(P) ~= 'string' then
	return fail('missing prefix')
end
if mode == 'decide' then
	return mode_decide()
elseif mode == 'queue' then
	return mode_queue()
elseif mode == 'get' then
	return mode_get()
elseif mode == 'age' then
	return mode_age()
elseif mode == 'sweep' then
	return mode_sweep()
end
return fail('unknown mode ' .. tostring(mode))
