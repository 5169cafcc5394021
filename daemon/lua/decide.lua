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
--   decide_batch  prefix rules_json n <the 15 arguments of decide from
--           event_id to changes_maxlen> x n
--     -> an array of n decide replies in order; rules_json "" for none.
--        alertd sends every event this way (one call per loop turn).
--   queue   prefix limit
--     -> one string: JSON array of the open incidents' snapshots in queue
--        order (limit <= 0: all of them). For scripts and tests: alertd
--        reads the queue in pages (stream_ids, snapshots).
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

-- The next value of counter seq:<name> (incident ids, accept sequence
-- numbers). They must never run backwards: PostgreSQL keeps every id
-- they gave, and a reused incident id would mix two incidents in the
-- audit trail (a reused accept_seq could even make a new event's row look
-- stored already). When Redis lost its data, INCR starts again at 1; the
-- rules then carry seq_floor, the highest value alertd knows of (its own
-- replies and PostgreSQL, docs/redis.md), and the counter jumps above it.
-- No extra command while the counter is intact.
local function next_seq(R, name)
	local key = P .. 'seq:' .. name
	local v = redis.call('INCR', key)
	local floor = R and type(R.seq_floor) == 'table' and
		tonumber(R.seq_floor[name]) or 0
	if v <= floor then
		v = floor + 1
		redis.call('SET', key, int(v))
	end
	return int(v)
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

-- The counter of a source's flood window w (P rate:<source>:<w>).
local function flood_key(source_id, w)
	return P .. 'rate:' .. source_id .. ':' .. int(w)
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
	local key = flood_key(source_id, w)
	-- One INCR per event (a refused one is counted too: past the hard
	-- limit every event of the window is refused anyway), the expiry
	-- set once, by the window's first event.
	local n = redis.call('INCR', key)
	if n == 1 then
		redis.call('PEXPIRE', key, int(2 * win))
	end
	if n > hard then
		return nil, (w + 1) * win - now
	end
	return n
end

-- The count of the source's previous flood window (0 when flood control
-- is off or that window saw nothing). Read only while an incident is
-- marked flooding and the current window is still under the soft limit.
local function rules_flood_prev(R, source_id, now)
	local win = tonumber(R.flood_window_ms) or 0
	if win <= 0 then
		return 0
	end
	return tonumber(redis.call('GET',
		flood_key(source_id, math.floor(now / win) - 1))) or 0
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
			-- Its band may have changed: esc_due looks now (LT: a
			-- due time already earlier stays).
			redis.call('ZADD', P .. 'esc:due', 'LT',
				string.format('%.0f', now), id)
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
			local id = next_seq(R, 'incident')
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
			-- Escalates like any new incident of its priority.
			redis.call('ZADD', P .. 'esc:due', now_ms, id)
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

-- One event: A holds the 15 per-event arguments of mode decide (A[1] is
-- event_id ... A[15] changes_maxlen), R the decoded rules or nil.
local function decide_one(A, R)
	local event_id, source_id, kind = A[1], A[2], A[3]
	local zone, label, etype, class = A[4], A[5], A[6], A[7]
	local base = tonumber(A[8])
	local now_ms, now_iso = A[9], A[10]
	local ttl = tonumber(A[11])
	local has_loc = A[12] == '1'
	local lat, lon = A[13], A[14]
	local maxlen = tonumber(A[15])
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

	-- (a) idempotency: the same event_id from the same source answers
	-- the first result. The key has the source: a sender chooses its ids,
	-- so another device's "000123" is another event, never a duplicate
	-- that would swallow it. '/' is in neither id's alphabet.
	local evt_key = P .. 'evt:' .. source_id .. '/' .. event_id
	local stored = redis.call('GET', evt_key)
	if stored then
		local o = cjson.decode(stored)
		return {'duplicate', o.outcome, o.incident_id, o.priority,
			o.accept_seq, o.opened, o.version, o.first_seen_ms,
			'', ''}
	end

	-- (a') issue 3 rules: registry, flood control, last-seen.
	local flood_n, extra = 0, nil
	if R then
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
			local seq = next_seq(R, 'accept')
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
	local was_priority, was_type = 0, nil
	if h then
		outcome = 'merged'
		was_priority, was_type = tonumber(h.priority) or 0, h.type
		h.count = int((tonumber(h.count) or 0) + 1)
		h.priority = int(math.max(tonumber(h.priority) or 0, base))
		if base > (tonumber(h.type_base) or -1) then
			h.type = etype
			h.type_base = int(base)
		end
		h.version = int((tonumber(h.version) or 0) + 1)
	else
		outcome = 'new'
		id = next_seq(R, 'incident')
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
		local over = soft > 0 and flood_n > soft
		if not over and was and soft > 0 then
			-- The mark holds while the previous window was over the
			-- soft limit too: a flood running across a window edge
			-- stays one flood instead of flapping off (and publishing
			-- its next soft presses) at every edge.
			over = rules_flood_prev(R, source_id,
				tonumber(now_ms)) > soft
		end
		if over then
			h.flooding = '1'
			-- Published when the mark appears, every soft-th event, and
			-- whenever the event raises the incident's priority or type
			-- (a second press, a callback request becoming a call
			-- request): a flood quiets repeats, never a change an
			-- operator has to see.
			quiet = was and (flood_n % soft) ~= 0 and
				(tonumber(h.priority) or 0) <= was_priority and
				h.type == was_type
		elseif was then
			h.flooding = '0'
		end
	end
	hsetall(P .. 'inc:' .. id, h)
	if outcome == 'new' then -- escalation timer (see mode_esc_due)
		redis.call('ZADD', P .. 'esc:due', now_ms, id)
	end

	-- (c) accept sequence, (d) queue position.
	local accept_seq = next_seq(R, 'accept')
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

local DECIDE_FIELDS = 15

local function mode_decide()
	if #ARGV ~= 17 and #ARGV ~= 18 then
		return fail('decide wants 17 or 18 arguments, got ' .. #ARGV)
	end
	local R = nil
	if #ARGV == 18 then
		R = cjson.decode(ARGV[18])
	end
	return decide_one({unpack(ARGV, 3, 17)}, R)
end

-- decide_batch prefix rules_json n <15 arguments of decide> x n
--   -> an array of n decide replies, in order (an element is an error
--      reply when that event's arguments were bad; the others stand).
-- The events are decided one after the other, exactly as n decide calls
-- would be; rules_json "" means no rules (decide with 17 arguments).
local function mode_decide_batch()
	local n = tonumber(ARGV[4])
	if n == nil or n < 1 or #ARGV ~= 4 + n * DECIDE_FIELDS then
		return fail('decide_batch wants 4 + 15 * n arguments, got ' ..
			#ARGV)
	end
	local R = nil
	if ARGV[3] ~= '' then
		R = cjson.decode(ARGV[3])
	end
	local out = {}
	for i = 0, n - 1 do
		local o = 4 + i * DECIDE_FIELDS
		out[#out + 1] = decide_one({unpack(ARGV, o + 1,
			o + DECIDE_FIELDS)}, R)
	end
	return out
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

-- ---- Operator actions (docs/redis.md, "Actions") ----
--
--   ack|resolve|note|transfer|reopen  prefix incident_id actor version
--       now_ms now_iso changes_maxlen zones may_override a1 a2 [to_zones]
--     version: "" or the version the operator acted on; another one is
--       refused as stale.
--     zones: "" (any) or the comma-separated zones the actor works on.
--     may_override: "1" when the actor's role may act on an incident that
--       another operator holds (supervisor, admin).
--     resolve: a1 note, a2 outcome code; note: a1 text; transfer: a1
--       "operator" or "zone", a2 the operator or zone; reopen: a1 note.
--     to_zones (optional, default ""): transfer to an operator: "" (any)
--       or the comma-separated zones the target works on; an incident
--       outside them is refused ("target_zone"): its holder could not see
--       it, and escalation would stop.
--   -> one string, a JSON object:
--     {"status":"ok","from":..,"to":..,"version":..,"change_id":..,
--      "snapshot":"<snapshot JSON as a string>"}
--     or {"status":"not_found"|"stale"|"held"|"resolved"|"not_resolved"|
--         "zone"|"target_zone", "version":.., "acked_by":.., "state":..}
--   An ack by the operator who already holds it is "ok" with
--   change_id "" (nothing changed). Every change bumps the version,
--   appends to the change stream and stops or re-arms escalation (key
--   esc:due, see the escalation modes).

local function action_refuse(status, h)
	local r = {status = status}
	if h then
		r.version = tonumber(h.version) or 0
		r.state = h.state or 'new'
		r.acked_by = h.acked_by
	end
	return cjson.encode(r)
end

local function action_in_zones(zones, zone)
	if zones == '' then
		return true
	end
	for z in string.gmatch(zones, '[^,]+') do
		if z == zone then
			return true
		end
	end
	return false
end

local function mode_action()
	if #ARGV ~= 12 and #ARGV ~= 13 then
		return fail(mode .. ' wants 12 or 13 arguments, got ' .. #ARGV)
	end
	local id, actor, want = ARGV[3], ARGV[4], ARGV[5]
	local now_ms, now_iso = ARGV[6], ARGV[7]
	local maxlen = tonumber(ARGV[8])
	local zones, override = ARGV[9], ARGV[10] == '1'
	local a1, a2, to_zones = ARGV[11], ARGV[12], ARGV[13] or ''
	if not is_uint(id) or actor == '' or not is_uint(now_ms) or
	    maxlen == nil or maxlen < 1 or (want ~= '' and not is_uint(want)) then
		return fail(mode .. ': bad incident_id, actor, now_ms, ' ..
			'changes_maxlen or version')
	end
	local key = P .. 'inc:' .. id
	local h = hgetall(key)
	if not h then
		return action_refuse('not_found', nil)
	end
	local state = h.state or 'new'
	-- The zone first: a refusal for any other reason names the
	-- incident's state, version and holder, which an operator of other
	-- zones may not see.
	if not override and not action_in_zones(zones, h.zone or '') then
		return action_refuse('zone', h)
	end
	if want ~= '' and want ~= json_int(h.version) then
		return action_refuse('stale', h)
	end
	local held = state == 'acknowledged' and h.acked_by ~= nil and
		h.acked_by ~= '' and h.acked_by ~= actor
	local to = state
	local detail = {action = mode}
	if mode == 'ack' then
		if state == 'resolved' then
			return action_refuse('resolved', h)
		end
		if held then
			return action_refuse('held', h)
		end
		if state == 'acknowledged' then
			return cjson.encode({status = 'ok', from = state, to = state,
				version = tonumber(h.version), change_id = '',
				snapshot = snapshot(h)})
		end
		to = 'acknowledged'
		h.acked_by = actor
		h.acked_at = now_iso
	elseif mode == 'resolve' then
		if state == 'resolved' then
			return action_refuse('resolved', h)
		end
		if held and not override then
			return action_refuse('held', h)
		end
		to = 'resolved'
		h.resolved_by = actor
		h.resolved_at = now_iso
		h.resolve_note = a1
		h.outcome = a2
		detail.note = a1
		if a2 ~= '' then -- optional: absent, not "" (docs/api.md)
			detail.outcome = a2
		end
		redis.call('ZREM', P .. 'queue', id)
		local open_key = P .. 'open:' .. (h.source_id or '') .. ':' ..
			(h.class or '')
		if redis.call('GET', open_key) == id then
			redis.call('DEL', open_key)
		end
	elseif mode == 'note' then
		detail.note = a1
		redis.call('RPUSH', P .. 'notes:' .. id, cjson.encode({
			at = now_iso, by = actor, note = a1}))
	elseif mode == 'transfer' then
		if state == 'resolved' then
			return action_refuse('resolved', h)
		end
		if held and not override then
			return action_refuse('held', h)
		end
		detail.to_kind = a1
		detail.to = a2
		if a1 == 'operator' then
			if not action_in_zones(to_zones, h.zone or '') then
				return action_refuse('target_zone', h)
			end
			to = 'acknowledged'
			h.acked_by = a2
			h.acked_at = now_iso
		else
			-- To another desk: it is new there, nobody holds it.
			to = 'new'
			h.zone = a2
			h.acked_by = ''
		end
	elseif mode == 'reopen' then
		if state ~= 'resolved' then
			return action_refuse('not_resolved', h)
		end
		to = 'new'
		h.acked_by = ''
		h.reopened_by = actor
		detail.note = a1
		redis.call('ZADD', P .. 'queue', queue_score(
			tonumber(h.priority) or 0, tonumber(h.first_seen_ms) or 0), id)
		local open_key = P .. 'open:' .. (h.source_id or '') .. ':' ..
			(h.class or '')
		if not redis.call('GET', open_key) then
			redis.call('SET', open_key, id)
		end
	end
	h.state = to
	h.version = int((tonumber(h.version) or 0) + 1)
	hsetall(key, h)
	if to ~= 'new' then
		redis.call('ZREM', P .. 'esc:due', id)
	elseif state ~= 'new' then
		-- Back to nobody's: escalation starts again from level 1.
		h.escalation_level = '0'
		redis.call('HSET', key, 'escalation_level', '0', 'esc_last_ms',
			now_ms)
		redis.call('ZADD', P .. 'esc:due', now_ms, id)
	end
	local snap = snapshot(h)
	local change_id = redis.call('XADD', P .. 'changes', 'MAXLEN', '~',
		int(maxlen), '*', 'incident', id, 'snapshot', snap)
	return cjson.encode({status = 'ok', from = state, to = to,
		version = tonumber(h.version), change_id = change_id,
		detail = detail, snapshot = snap})
end

local action_modes = {
	ack = mode_action, resolve = mode_action, note = mode_action,
	transfer = mode_action, reopen = mode_action,
}

-- ---- Escalation (docs/redis.md, "Escalation") ----
--
-- esc:due is a sorted set: incident id -> the time (ms) its next level is
-- due. An incident enters it when it opens (mode decide) and leaves it
-- when it is acknowledged or resolved. The incident hash keeps
-- escalation_level (levels fired so far) and esc_last_ms (when the last
-- fired, or when escalation restarted). Firing is claimed here, in one
-- script call, so that several alertd instances fire each level once.
--
--   esc_due  prefix now_ms limit changes_maxlen policy lease_ms instance
--     policy: "min:repeat:d1,d2,...;..." (bands, min_priority
--     descending; delays in ms, each from the previous level).
--     instance: the caller's instance id (esc_alive), the level's owner.
--   -> JSON {"fired":[{"id","level","version","snapshot","change_id","run"}],
--            "next": earliest due ms or null}
--     Each fired level is also put in notify:pending (field "id:level",
--     value {"id","level","lease","run","version","at","resumed","owner"})
--     until its notifications are done. "run" (esc_run_ms in the hash) is when
--     this run of escalation started (opening, reopen, transfer): part of
--     the notifications' idempotency keys, so that they stay unique when
--     Redis loses its data and incident ids start again at 1.
--     An open incident below every band stays in esc:due, looked at again
--     every ESC_RECHECK_MS (its priority may rise into a band).
--   esc_pending prefix now_ms lease_ms limit instance [cursor [count]]
--     -> JSON {"cursor": the next cursor, "0" when the pass is complete,
--              "levels": [{"id","level","run","version","at","resumed",
--                          "snapshot"}]}:
--        one HSCAN slice of notify:pending from cursor (default "0",
--        about count fields, default 256); among them the
--        pending levels whose lease ran out (its esc_done was lost) or
--        whose owner is no longer alive (its live key expired: the
--        instance died or stopped while notifying), leased anew to the
--        caller; a level whose incident is gone, taken (acknowledged,
--        resolved) or escalating anew since is dropped instead.
--   esc_alive prefix instance ttl_ms now_ms -> "1": the instance runs.
--     Its key live:<instance> holds for ttl_ms the time since when it has
--     been refreshed without a break (every instance refreshes its own
--     each second). An instance judges other owners by their keys only
--     once its own streak is longer than ttl_ms: after Redis was away
--     (or the instance was cut off, or just started), every live
--     instance has had time to refresh its key again, so a missing key
--     means a dead owner, not one that has not been heard yet.
--   esc_gone prefix instance -> "1": the instance stops (its drain is
--     done): its live key goes now, not after ttl_ms, so that the levels
--     it was notifying are taken up at the next esc_pending of another
--     instance.
--   esc_done prefix id level      -> "1": the level's notifications ended.
--   esc_hurry prefix id now_ms [level]
--     -> "1": a channel of that level gave up; the next level is due now
--        (esc_hurry = the level), unless the next is a repeat of the last
--        level, or the incident moved on (another level, ack) meanwhile.

local function esc_policy(text)
	local bands = {}
	for band in string.gmatch(text, '[^;]+') do
		local mn, rep, delays = string.match(band, '^(%d+):(%d+):([%d,]+)$')
		if mn then
			local d = {}
			for x in string.gmatch(delays, '%d+') do
				d[#d + 1] = tonumber(x)
			end
			bands[#bands + 1] = {min = tonumber(mn), rep = tonumber(rep),
				delays = d}
		end
	end
	return bands
end

local function esc_delay(band, n)
	if n <= #band.delays then
		return band.delays[n]
	end
	return band.rep
end

-- An open incident below every band is looked at again this often: its
-- priority may rise into a band later (aging, the repeat boost, a reload
-- that lowers a band). One HGETALL per such incident and period.
local ESC_RECHECK_MS = 10000

local function mode_esc_due()
	local now = tonumber(ARGV[3])
	local limit = tonumber(ARGV[4])
	local maxlen = tonumber(ARGV[5])
	local bands = esc_policy(ARGV[6] or '')
	local lease = tonumber(ARGV[7])
	local owner = ARGV[8]
	if now == nil or limit == nil or maxlen == nil or lease == nil then
		return fail('esc_due: bad now_ms, limit, changes_maxlen or lease')
	end
	if owner == '' then
		owner = nil
	end
	local due_key = P .. 'esc:due'
	local ids = redis.call('ZRANGEBYSCORE', due_key, '-inf', ARGV[3],
		'LIMIT', 0, limit)
	local fired = {}
	for _, id in ipairs(ids) do
		local key = P .. 'inc:' .. id
		local h = hgetall(key)
		local band = nil
		if h and (h.state or 'new') == 'new' then
			local prio = tonumber(h.priority) or 0
			for _, b in ipairs(bands) do
				if prio >= b.min then
					band = b
					break
				end
			end
		end
		if h == nil or (h.state or 'new') ~= 'new' then
			redis.call('ZREM', due_key, id)
		elseif band == nil then
			-- Nobody's, but below every band now: not dropped.
			redis.call('ZADD', due_key,
				string.format('%.0f', now + ESC_RECHECK_MS), id)
		else
			local lv = tonumber(h.escalation_level) or 0
			local n = lv + 1
			local last = tonumber(h.esc_last_ms) or
				tonumber(h.first_seen_ms) or now
			local due = last + esc_delay(band, n)
			-- A give-up at level lv (esc_hurry = lv) brings level n
			-- forward, unless n is a repeat of the last level: that
			-- one waits its interval (else a target that always gives
			-- up would repeat the last level without pause).
			if lv > 0 and tonumber(h.esc_hurry) == lv and
			    n <= #band.delays then
				due = now
			end
			if due > now then
				redis.call('ZADD', due_key, string.format('%.0f', due), id)
			else
				-- When this run of escalation started (the
				-- opening, a reopen or a transfer): part of
				-- every idempotency key of its levels.
				if n == 1 then
					h.esc_run_ms = int(last)
				elseif h.esc_run_ms == nil then
					h.esc_run_ms = h.first_seen_ms or ARGV[3]
				end
				h.escalation_level = int(n)
				h.esc_last_ms = ARGV[3]
				h.esc_hurry = '0'
				h.version = int((tonumber(h.version) or 0) + 1)
				hsetall(key, h)
				redis.call('ZADD', due_key, string.format('%.0f',
					now + esc_delay(band, n + 1)), id)
				local snap = snapshot(h)
				local cid = redis.call('XADD', P .. 'changes', 'MAXLEN',
					'~', int(maxlen), '*', 'incident', id,
					'snapshot', snap)
				local run = tonumber(h.esc_run_ms)
				redis.call('HSET', P .. 'notify:pending', id .. ':' .. n,
					cjson.encode({id = tonumber(id), level = n,
						lease = now + lease, run = run,
						version = tonumber(h.version), at = now,
						resumed = 0, owner = owner}))
				fired[#fired + 1] = {id = tonumber(id), level = n,
					version = tonumber(h.version), snapshot = snap,
					change_id = cid, run = run}
			end
		end
	end
	local first = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
	local nxt = cjson.null
	if first[2] then
		nxt = tonumber(first[2])
	end
	return cjson.encode({fired = fired, next = nxt})
end

-- The live keys' TTL (esc_alive's ttl_ms as alertd sends it): how long a
-- caller's own streak must be before it judges other owners by theirs.
local LIVE_TTL_MS = 6000

local function mode_esc_pending()
	local now, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
	local limit = tonumber(ARGV[5])
	if now == nil or lease == nil or limit == nil then
		return fail('esc_pending: bad now_ms, lease_ms or limit')
	end
	local me = ARGV[6]
	if me == '' then
		me = nil
	end
	local since = me and tonumber(redis.call('GET', P .. 'live:' .. me))
	local judge = since ~= nil and now - since > LIVE_TTL_MS
	local cursor, count = ARGV[7] or '0', tonumber(ARGV[8] or '256')
	if not cursor:match('^%d+$') or count == nil or count < 1 then
		return fail('esc_pending: bad cursor or count')
	end
	local pend_key = P .. 'notify:pending'
	-- One slice of the hash per call, so that thousands of pending
	-- levels (an earthquake) never hold Redis for long in one call.
	local scan = redis.call('HSCAN', pend_key, cursor, 'COUNT', int(count))
	local flat = scan[2]
	local out = {}
	local alive = {}
	-- A level's owner that no longer refreshes its live key died or
	-- stopped: its levels need not wait for their lease. Records
	-- without an owner (written before owners) wait for it.
	local function owner_gone(o)
		if not judge or type(o) ~= 'string' or o == me then
			return false
		end
		if alive[o] == nil then
			alive[o] = redis.call('EXISTS', P .. 'live:' .. o) == 1
		end
		return not alive[o]
	end
	for i = 1, #flat, 2 do
		local ok, e = pcall(cjson.decode, flat[i + 1])
		if not ok or type(e) ~= 'table' then
			redis.call('HDEL', pend_key, flat[i])
		elseif #out < limit and ((tonumber(e.lease) or 0) <= now or
		    owner_gone(e.owner)) then
			local h = hgetall(P .. 'inc:' .. tostring(e.id))
			local level = tonumber(e.level) or 0
			if h == nil or (h.state or 'new') ~= 'new' or
			    (tonumber(h.escalation_level) or 0) < level or
			    (e.run and h.esc_run_ms and
			     tonumber(h.esc_run_ms) ~= tonumber(e.run)) then
				-- Gone, taken (ack, resolve) or escalating
				-- anew since: the level is not wanted any more.
				redis.call('HDEL', pend_key, flat[i])
			else
				e.lease = now + lease
				e.owner = me
				e.resumed = (tonumber(e.resumed) or 0) + 1
				redis.call('HSET', pend_key, flat[i], cjson.encode(e))
				out[#out + 1] = {id = e.id, level = e.level,
					run = e.run, version = e.version, at = e.at,
					resumed = e.resumed, snapshot = snapshot(h)}
			end
		end
	end
	local levels = '[]'
	if #out > 0 then
		levels = cjson.encode(out)
	end
	return '{"cursor":"' .. scan[1] .. '","levels":' .. levels .. '}'
end

local function mode_esc_alive()
	local ttl, now = tonumber(ARGV[4]), tonumber(ARGV[5])
	if ARGV[3] == nil or ARGV[3] == '' or ttl == nil or ttl < 1 or
	    now == nil then
		return fail('esc_alive: bad instance, ttl_ms or now_ms')
	end
	local key = P .. 'live:' .. ARGV[3]
	local since = tonumber(redis.call('GET', key)) or now
	redis.call('SET', key, int(since), 'PX', int(ttl))
	return '1'
end

local function mode_esc_gone()
	if ARGV[3] == nil or ARGV[3] == '' then
		return fail('esc_gone: bad instance')
	end
	redis.call('DEL', P .. 'live:' .. ARGV[3])
	return '1'
end

local function mode_esc_done()
	redis.call('HDEL', P .. 'notify:pending', ARGV[3] .. ':' .. ARGV[4])
	return '1'
end

-- Marks the give-up of level ARGV[5] (absent: the current level); only
-- while that level is the incident's latest and it is nobody's.
local function mode_esc_hurry()
	local key = P .. 'inc:' .. ARGV[3]
	local st = redis.call('HMGET', key, 'state', 'escalation_level')
	local lv = ARGV[5] or st[2]
	if redis.call('ZSCORE', P .. 'esc:due', ARGV[3]) and
	    (st[1] or 'new') == 'new' and tonumber(lv) ~= nil and
	    tonumber(st[2]) == tonumber(lv) then
		redis.call('HSET', key, 'esc_hurry', int(tonumber(lv)))
		redis.call('ZADD', P .. 'esc:due', ARGV[4], ARGV[3])
	end
	return '1'
end

local esc_modes = {
	esc_due = mode_esc_due, esc_pending = mode_esc_pending,
	esc_done = mode_esc_done, esc_hurry = mode_esc_hurry,
	esc_alive = mode_esc_alive, esc_gone = mode_esc_gone,
}

-- ---- Console streams and presence (docs/redis.md) ----
--
--   stream_ids prefix
--     -> JSON {"last_id": the newest change id ("0-0" if none),
--              "ids": [the open incidents' ids in queue order]}: the
--        first step of what a console gets on connect (daemon/qsnap.c).
--        The ids and last_id are read in one call, so every incident
--        open at last_id is in the list; whatever changes after it is a
--        change after last_id, which the console gets from the stream.
--   snapshots prefix ids (comma-separated, at most 1000)
--     -> JSON array of the snapshot JSON strings of those incidents, in
--        the order given (an id no longer in the open queue is left out,
--        its change after last_id tells the console): the
--        pages of the queue after stream_ids. One call for the whole
--        queue held Redis, and every event's decision, for about 100 ms
--        with 15,000 open incidents (docs/BENCHMARKS.md, optimisation 31).
--   presence prefix now_ms ttl_ms min names
--     names: comma-separated operators on duty connected to this instance.
--     Each is kept in the sorted set presence until now + ttl (instances
--     refresh theirs every second); the count over all instances decides
--     the staffing state (key staffing: "short" or absent).
--     -> JSON {"on_duty": n, "action": "open"|"close"|"",
--              "episode": k, "incident": id or 0}
--   staffing_set prefix episode incident_id -> "1": the incident opened
--     for that shortage (resolved when staff returns).

local function mode_stream_ids()
	local last = redis.call('XREVRANGE', P .. 'changes', '+', '-',
		'COUNT', 1)
	local last_id = '0-0'
	if last[1] then
		last_id = last[1][1]
	end
	local ids = redis.call('ZREVRANGE', P .. 'queue', 0, -1)
	return '{"last_id":' .. cjson.encode(last_id) .. ',"ids":[' ..
		table.concat(ids, ',') .. ']}'
end

local function mode_snapshots()
	local snaps, n = {}, 0
	for id in string.gmatch(ARGV[3] or '', '[^,]+') do
		n = n + 1
		if n > 1000 then
			return fail('snapshots: at most 1000 ids')
		end
		if not is_uint(id) then
			return fail('snapshots: ids are decimal incident ids')
		end
		-- Resolved since stream_ids: left out (its change follows).
		local h = redis.call('ZSCORE', P .. 'queue', id) and
			hgetall(P .. 'inc:' .. id)
		if h then
			snaps[#snaps + 1] = snapshot(h)
		end
	end
	if #snaps == 0 then
		return '[]'
	end
	return cjson.encode(snaps)
end

local function mode_presence()
	local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
	local min = tonumber(ARGV[5])
	if now == nil or ttl == nil or min == nil then
		return fail('presence: bad now_ms, ttl_ms or min')
	end
	local key = P .. 'presence'
	for name in string.gmatch(ARGV[6] or '', '[^,]+') do
		redis.call('ZADD', key, string.format('%.0f', now + ttl), name)
	end
	redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[3])
	local n = redis.call('ZCARD', key)
	local st_key = P .. 'staffing'
	local st = hgetall(st_key) or {}
	local action = ''
	if min > 0 and n < min and st.state ~= 'short' then
		action = 'open'
		st.state = 'short'
		st.episode = int(redis.call('INCR', P .. 'seq:staffing'))
		st.incident = '0'
		hsetall(st_key, st)
	elseif st.state == 'short' and (min == 0 or n >= min) then
		action = 'close'
		redis.call('DEL', st_key)
	end
	return cjson.encode({on_duty = n, action = action,
		episode = tonumber(st.episode) or 0,
		incident = tonumber(st.incident) or 0})
end

local function mode_staffing_set()
	local st_key = P .. 'staffing'
	if redis.call('HGET', st_key, 'episode') == ARGV[3] then
		redis.call('HSET', st_key, 'incident', ARGV[4])
		return '1'
	end
	return '0'
end

local stream_modes = {
	stream_ids = mode_stream_ids, snapshots = mode_snapshots,
	presence = mode_presence,
	staffing_set = mode_staffing_set,
}

if type(P) ~= 'string' then
	return fail('missing prefix')
end
if action_modes[mode] then
	return action_modes[mode]()
end
if esc_modes[mode] then
	return esc_modes[mode]()
end
if stream_modes[mode] then
	return stream_modes[mode]()
end
if mode == 'decide' then
	return mode_decide()
elseif mode == 'decide_batch' then
	return mode_decide_batch()
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
