#!/usr/bin/env python3
"""bench_report.py RESULTS MARKDOWN: turns the lines scripts/bench.sh
collected (RESULT/LIMIT/DB/MACHINE/VERSION key=value ...) into the tables
of docs/BENCHMARKS.md, between the markers <!-- bench:begin --> and
<!-- bench:end -->; the hand-written text around them is kept."""
import pathlib
import re
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def parse(path):
    runs, limits, db, machine, versions = {}, {}, {}, [], []
    for line in pathlib.Path(path).read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("MACHINE", "VERSION"):
            (machine if kind == "MACHINE" else versions).append(rest)
            continue
        kv = dict(re.findall(r"(\w+)=(\S*)", rest))
        name = kv.get("name")
        if not name:
            continue
        {"RESULT": runs, "LIMIT": limits, "DB": db}.get(kind, {})[name] = kv
    return runs, limits, db, machine, versions


def num(d, k, default=0.0):
    try:
        return float(d.get(k, default))
    except (TypeError, ValueError):
        return default


def fmt(v, unit=""):
    if v is None:
        return "—"
    if v >= 100:
        return "{:,.0f}{}".format(v, unit)
    return "{:.2f}{}".format(v, unit)


def ratio(a, b):
    return "{:.2f}".format(a / b) if a and b else "—"


def shared_cores(limits, machine):
    """(events/s, cores, PostgreSQL µs, Redis µs): what the machine's cores
    take when they run nothing but PostgreSQL's and Redis's share of an
    event, from the CPU each spent per event in its limit run; None if a
    results file lacks them."""
    pg, rd = limits.get("pg-batch-512", {}), limits.get("redis-decide-batch", {})
    pg_us = num(pg, "backend_cpu_us_per_row") + num(pg, "helpers_cpu_us_per_row")
    rd_us = num(rd, "cpu_us_per_event")
    cores = cores_of(machine)
    if pg_us <= 0 or rd_us <= 0 or cores <= 0:
        return None
    return cores * 1e6 / (pg_us + rd_us), cores, pg_us, rd_us


def cores_of(machine):
    return next((int(m.split("=", 1)[1]) for m in machine
                 if m.startswith("nproc=")), 0)


def spent(x, cores):
    """(alertd, PostgreSQL, Redis, load generator µs per answered event,
    the most `cores` take at those costs, the same with alertd's share at
    zero) for an alertd run, from /proc (bench.sh run_lg); None when a
    results file lacks them."""
    n = num(x, "acked")
    if "pg_us_per_ev" not in x or "lg_cpu_ms" not in x or n <= 0 or cores <= 0:
        return None
    us = (num(x, "cpu_ms_per_1k"), num(x, "pg_us_per_ev"),
          num(x, "redis_us_per_ev"), num(x, "lg_cpu_ms") * 1e3 / n)
    rest = sum(us[1:])
    return us + (cores * 1e6 / sum(us) if sum(us) else 0,
                 cores * 1e6 / rest if rest else 0)


def build(runs, limits, db, machine, versions, command):
    r = lambda n: runs.get(n, {})
    out = []
    lim = {k: num(v, "rate") for k, v in limits.items()}
    echo = num(r("limit-echo"), "throughput")
    # Redis as alertd calls it under load (64 events a call); the older
    # one-event-a-call row where a results file has no batch row.
    redis = lim.get("redis-decide-batch") or lim.get("redis-decide")
    implied = [v for v in (echo, redis, lim.get("pg-batch-512")) if v]
    limit = min(implied) if implied else 0
    shared = shared_cores(limits, machine)
    # http-max runs with a few numbers of connections (bench.sh
    # BENCH_HTTP_CONNS): the highest sustained rate is the best of them.
    hts = [x for n, x in runs.items() if n == "http-max" or n.startswith("http-max-")]
    ht = max(hts, key=lambda x: num(x, "throughput")) if hts else {}
    tcp, http = num(r("tcp-max"), "throughput"), num(ht, "throughput")
    am = num(r("am-max"), "throughput")

    out.append("| measurement | alertd | target | peer or limit | alertd / that |")
    out.append("| --- | --- | --- | --- | --- |")
    both = ("; %s if both cores did nothing but PostgreSQL's and Redis's work"
            % fmt(shared[0])) if shared else ""
    out.append("| durable TCP ingest, events/s (64 conns x 64 pipelined) | %s | ≥ 30,000 | limit %s (lowest of echo, Redis decide in 64-event calls, PostgreSQL with alertd's 512-row batches%s) | %s |"
               % (fmt(tcp), fmt(limit), both, ratio(tcp, limit)))
    hs = spent(ht, cores_of(machine))
    out.append("| durable HTTP/JSON ingest, events/s (%d keep-alive conns, one request at a time on each%s) | %s | ≥ 20,000 | Alertmanager %s (not durable)%s | %s |"
               % (num(ht, "conns"),
                  ("; the best of %s conns: %s events/s" % (
                      " / ".join("%d" % num(x, "conns") for x in hts),
                      " / ".join(fmt(num(x, "throughput")) for x in hts)))
                  if len(hts) > 1 else "", fmt(http), fmt(am),
                  ("; at this run's CPU per event (alertd, PostgreSQL, Redis and the load generator: %s µs) %d cores take at most %s events/s, %s if alertd's share were zero"
                   % (fmt(sum(hs[:4])), cores_of(machine), fmt(hs[4]), fmt(hs[5])))
                  if hs else "", ratio(http, am)))
    # tcp-10k runs several times (bench.sh BENCH_10K_RUNS): the run with
    # the median ack p99 stands for them here.
    tens = sorted((x for n, x in runs.items()
                   if n == "tcp-10k" or n.startswith("tcp-10k-")),
                  key=lambda x: num(x, "ack_p99_ms"))
    ten = tens[(len(tens) - 1) // 2] if tens else {}
    for n, rate, rows in (("tcp-1k", "1k", 1), ("tcp-10k", "10k", 30)):
        x = ten if n == "tcp-10k" else r(n)
        sat = ("machine %s %% busy, alertd waited for a core %s %% of the run"
               % (x["machine_busy_pct"], x["runq_wait_pct"])
               if "machine_busy_pct" in x else "")
        runs_note = ""
        if n == "tcp-10k" and len(tens) > 1:
            runs_note = " (%s: the median of %d runs by p99, whose p99s were %s ms)" % (
                x.get("name", ""), len(tens),
                " / ".join(fmt(num(t, "ack_p99_ms")) for t in
                           sorted(tens, key=lambda t: t.get("name", ""))))
        # What one durable commit of the rows arriving at this rate takes
        # with PostgreSQL alone (bench.sh limit-pg): every Ack waits for one.
        c = limits.get("pg-commit-%d" % rows, {})
        if num(c, "count"):
            sat += "%sPostgreSQL alone commits %d-row batches at this rate with p99 %s ms" % (
                "; " if sat else "", rows, fmt(num(c, "p99_ms")))
        out.append("| device ack latency at %s ev/s, p50 / p99 / p99.9 ms%s | %s / %s / %s | p99 ≤ 10 ms at 10k | %s | |"
                   % (rate, runs_note, fmt(num(x, "ack_p50_ms")), fmt(num(x, "ack_p99_ms")),
                      fmt(num(x, "ack_p999_ms")), sat))
    # 10k/s for 45 s: the kernel's writeback of the run's own first
    # seconds (30 s old) comes inside it; PostgreSQL alone beside it.
    su, ps = r("sustained-10k"), limits.get("pg-sustained-30", {})
    if su:
        note = ("PostgreSQL alone, the same 45 s of 30-row commits: p99 / p99.9 / max %s / %s / %s ms"
                % (fmt(num(ps, "p99_ms")), fmt(num(ps, "p999_ms")), fmt(num(ps, "max_ms")))
                if num(ps, "count") else "")
        out.append("| device ack latency at 10k ev/s sustained for 45 s (the kernel writes back the run's own pages from 30 s on), p50 / p99 / p99.9 ms | %s / %s / %s | p99 ≤ 10 ms at 10k | %s | |"
                   % (fmt(num(su, "ack_p50_ms")), fmt(num(su, "ack_p99_ms")),
                      fmt(num(su, "ack_p999_ms")), note))
    q, f, a = r("tcp-1k"), r("tcp-1k-flood"), r("am-1k")
    # Heartbeats make no incident: only about 2 % of the events reach the
    # console, so the number of changes the p99 is over goes with it.
    out.append("| ingest-to-console at 1k ev/s, p50 / p99 ms (%d changes) | %s / %s | p99 ≤ 5 ms | Alertmanager POST-to-webhook %s / %s | %s (p99) |"
               % (num(q, "con_seen"), fmt(num(q, "con_p50_ms")), fmt(num(q, "con_p99_ms")),
                  fmt(num(a, "con_p50_ms")), fmt(num(a, "con_p99_ms")),
                  ratio(num(q, "con_p99_ms"), num(a, "con_p99_ms"))))
    fl = runs.get("flood", {})
    out.append("| ingest-to-console at 1k ev/s while one source floods (%s ev/s), p50 / p99 ms (%d changes) | %s / %s | p99 ≤ 2x quiet | quiet p99 %s | %s |"
               % (fmt(num(fl, "throughput")), num(f, "con_seen"), fmt(num(f, "con_p50_ms")),
                  fmt(num(f, "con_p99_ms")), fmt(num(q, "con_p99_ms")),
                  ratio(num(f, "con_p99_ms"), num(q, "con_p99_ms"))))
    b, bd = r("burst"), db.get("burst", {})
    if b:
        rows = num(bd, "rows")
        want = num(b, "new") + num(b, "merged")
        lost = int(want - rows) if bd else None
        sent, acked = int(num(b, "sent")), int(num(b, "acked"))
        # Panics came first if every one reached the console, and the last
        # panic reached the console and was answered before the heartbeat
        # backlog was done (the last heartbeat or fault Ack; heartbeats
        # make no incident, so they never reach the consoles), and the
        # panics overtook the backlog: their ack p99 well under the p99 of
        # everything (equal p99s mean one first-in-first-out queue).
        backlog_done = num(b, "last_normal_ack_s")
        panics_first = (num(b, "con_panics") >= num(b, "panics_sent") and
                        0 <= num(b, "last_panic_con_s") < backlog_done and
                        0 <= num(b, "last_panic_ack_s") < backlog_done and
                        num(b, "ack_panic_p99_ms") < 0.5 * num(b, "ack_p99_ms"))
        out.append("| burst: %s events, 10,000 sources: all durable after | %s s (%s ev/s) | | | |"
                   % ("{:,}".format(sent), fmt(num(b, "done_s")),
                      fmt(num(b, "throughput"))))
        out.append("| burst: answered / rows in PostgreSQL / lost | %s acked of %s, %s rows for %s new+merged, %s lost | zero lost | | |"
                   % ("{:,}".format(acked), "{:,}".format(sent),
                      "{:,}".format(int(rows)), "{:,}".format(int(want)),
                      lost if lost is not None else "?"))
        out.append("| burst: panics on the console / last panic on the console / last panic Ack / heartbeat backlog done (last heartbeat Ack) | %d of %d / %s s / %s s / %s s | every panic before the backlog is done | | %s |"
                   % (num(b, "con_panics"), num(b, "panics_sent"),
                      fmt(num(b, "last_panic_con_s")),
                      fmt(num(b, "last_panic_ack_s")), fmt(backlog_done),
                      "panics first" if panics_first else
                      "**not first**: panic ack p99 %s ms vs all %s ms" % (
                          fmt(num(b, "ack_panic_p99_ms")),
                          fmt(num(b, "ack_p99_ms")))))
        out.append("| burst: panic Ack p99 / all Acks p99, ms | %s / %s | | | |"
                   % (fmt(num(b, "ack_panic_p99_ms")), fmt(num(b, "ack_p99_ms"))))
        out.append("| burst: panic ingest-to-console p99 / every change's p99, ms | %s / %s | | | |"
                   % (fmt(num(b, "con_panic_p99_ms")), fmt(num(b, "con_p99_ms"))))
    for kind, what in (("restart", "SIGTERM"), ("crash", "SIGKILL")):
        rs, rd = r(kind), db.get(kind, {})
        if not rs:
            continue
        # One row per distinct event sent: an event sent again after the
        # reconnect may be answered duplicate (decided, or written, before
        # the signal), so new+merged undercounts the rows it needs.
        rows = num(rd, "rows")
        sent, acked = int(num(rs, "sent")), int(num(rs, "acked"))
        want = sent - num(rs, "dup_sent")
        lost = (sent - acked) + (max(0, int(want - rows)) if rd else 0)
        out.append("| %s under load (%s 8 s into 5k ev/s, a new alertd started when it exited): exited / ready again / longest time without an Ack, s | %s / %s / %s | | | |"
                   % (kind, what, fmt(num(rd, "drain_s")), fmt(num(rd, "down_s")),
                      fmt(num(rs, "max_gap_ms") / 1000)))
        out.append("| %s: answered / rows in PostgreSQL / lost / sent again after reconnecting | %s acked of %s, %s rows for %s distinct events, %s lost / %s events on %s connections | zero lost | | |"
                   % (kind, "{:,}".format(acked), "{:,}".format(sent),
                      "{:,}".format(int(rows)), "{:,}".format(int(want)),
                      lost if rd else "?", "{:,}".format(int(num(rs, "resent"))),
                      int(num(rs, "reconnects"))))
        out.append("| %s: Ack p50 / p99 / max over the whole run, ms | %s / %s / %s | | | |"
                   % (kind, fmt(num(rs, "ack_p50_ms")), fmt(num(rs, "ack_p99_ms")),
                      fmt(num(rs, "ack_max_ms"))))
    rss = max([num(x, "rss_hwm_kb") for n, x in runs.items()
               if not n.startswith(("am-", "limit-", "flood"))] or [0])
    am_rss = max([num(x, "rss_hwm_kb") for n, x in runs.items()
                  if n.startswith("am-")] or [0])
    out.append("| peak RSS over the alertd runs, MB | %s | ≤ 64 MB | Alertmanager %s | %s |"
               % (fmt(rss / 1024), fmt(am_rss / 1024), ratio(rss, am_rss)))

    out.append("")
    out.append("Every run (RSS is VmHWM, reset before each run; CPU is utime+stime of the measured process per 1,000 answered events; machine busy: the two cores' busy share during the run; waited: the share of the run the measured process was runnable but had no core, from /proc/PID/schedstat):")
    out.append("")
    out.append("| run | mode | conns | rate | sent | answered | events/s | ack p50 / p99 / p99.9 ms | console p50 / p99 ms | peak RSS MB | CPU ms / 1k ev | machine busy / waited % | load before |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, x in runs.items():
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s | %s |" % (
            n, x.get("mode", ""), x.get("conns", ""),
            "closed loop" if num(x, "rate") == 0 else fmt(num(x, "rate")),
            x.get("sent", ""), x.get("acked", ""), fmt(num(x, "throughput")),
            fmt(num(x, "ack_p50_ms")), fmt(num(x, "ack_p99_ms")),
            fmt(num(x, "ack_p999_ms")),
            ("%s / %s" % (fmt(num(x, "con_p50_ms")), fmt(num(x, "con_p99_ms")))
             if "con_seen" in x else "—"),
            fmt(num(x, "rss_hwm_kb") / 1024) if num(x, "rss_hwm_kb") else "—",
            x.get("cpu_ms_per_1k", "—") if num(x, "rss_hwm_kb") else "—",
            ("%s / %s" % (x["machine_busy_pct"], x["runq_wait_pct"])
             if "machine_busy_pct" in x and num(x, "rss_hwm_kb") else "—"),
            x.get("load1", "—")))
    cores = cores_of(machine)
    where = [(n, x, spent(x, cores)) for n, x in runs.items()
             if x.get("mode") in ("tcp", "http") and num(x, "rss_hwm_kb")
             and num(x, "rate") == 0 and not n.startswith("limit-")]
    where = [w for w in where if w[2]]
    if where:
        out.append("")
        out.append("Where the cores went in the closed-loop runs, per answered event (utime+stime from /proc over each run: alertd; the PostgreSQL postmaster and its children, which take a child's time along if it exits during the run; Redis; the load generator's own getrusage; what each spent before the first event and after the last counts too). At those costs %d cores always busy take at most the \"ceiling\"; the last column is that ceiling if alertd cost nothing, what PostgreSQL, Redis and the client alone leave room for:" % cores)
        out.append("")
        out.append("| run | events/s | alertd µs | PostgreSQL µs | Redis µs | load generator µs | all µs | ceiling events/s | ceiling without alertd | events/s / ceiling |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for n, x, w in where:
            ev = num(x, "throughput")
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                n, fmt(ev), fmt(w[0]), fmt(w[1]), fmt(w[2]), fmt(w[3]),
                fmt(sum(w[:4])), fmt(w[4]), fmt(w[5]), ratio(ev, w[4])))
    staged = [(n, x) for n, x in runs.items() if "ingest_events" in x]
    if staged:
        out.append("")
        out.append("Inside alertd, from its own /metrics histograms scraped before and after each run (docs/operations.md): receive-to-answer, each Redis decide call, each audit batch sent to PostgreSQL until committed. Quantiles are interpolated inside the histogram's buckets; a p99 ingest far above both stages' p99 means events waited in alertd's queues (for a batch to finish), not in one slow call:")
        out.append("")
        out.append("| run | ingest p50 / p99 ms | decide calls (events per call) | decide p50 / p99 ms | audit batches (events per batch) | audit batch p50 / p99 ms |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for n, x in staged:
            ev = num(x, "ingest_events")
            dc, ab = num(x, "decide_calls"), num(x, "audit_batches")
            out.append("| %s | %s / %s | %s (%s) | %s / %s | %s (%s) | %s / %s |" % (
                n, fmt(num(x, "ingest_p50_ms")), fmt(num(x, "ingest_p99_ms")),
                fmt(dc), "%.1f" % (ev / dc) if dc else "—",
                fmt(num(x, "decide_p50_ms")), fmt(num(x, "decide_p99_ms")),
                fmt(ab), "%.1f" % (ev / ab) if ab else "—",
                fmt(num(x, "audit_p50_ms")), fmt(num(x, "audit_p99_ms"))))
    out.append("")
    out.append("The machine's limits, measured in the same run:")
    out.append("")
    out.append("| limit | rate | what |")
    out.append("| --- | --- | --- |")
    out.append("| raw libevent echo of the frames | %s frames/s | `loadgen echo-server` + `loadgen tcp --echo`, same connections and window as tcp-max |" % fmt(echo))
    e1 = r("limit-echo-1k")
    out.append("| latency floor: the echo server at 1k frames/s, open loop, 100 conns | p50 / p99 / p99.9 %s / %s / %s ms | what loopback TCP, the client and the scheduler of this (shared) machine add to any answer |"
               % (fmt(num(e1, "ack_p50_ms")), fmt(num(e1, "ack_p99_ms")),
                  fmt(num(e1, "ack_p999_ms"))))
    e10 = r("limit-echo-10k")
    if e10:
        out.append("| latency floor at 10k frames/s, the same | p50 / p99 / p99.9 %s / %s / %s ms | the same, at the rate of the 10 ms ack target |"
                   % (fmt(num(e10, "ack_p50_ms")), fmt(num(e10, "ack_p99_ms")),
                      fmt(num(e10, "ack_p999_ms"))))
    out.append("| Redis, decide.lua pipelined | %s calls/s | `redis-benchmark -P 32 -c 4` EVALSHA of daemon/lua/decide.lua, every call opening an incident |" % fmt(lim.get("redis-decide")))
    if lim.get("redis-decide-batch"):
        out.append("| Redis, decide.lua in calls of 64 events, pipelined | %s events/s (%s calls/s) | `redis-benchmark -P 4 -c 4 -r 10000` EVALSHA of `decide_batch` with 64 events from 10,000 sources, one panic, one fault and 62 heartbeats, and the rules argument alertd sends for the bench's configuration (`loadgen rules`): how alertd calls it under load (tcp-max averages about 61 a call) |"
                   % (fmt(lim.get("redis-decide-batch")),
                      fmt(num(limits.get("redis-decide-batch", {}), "calls"))))
    # bench/lg_pg.c (loadgen pg-limit): alertd's own batch statement and
    # rows, one connection (bench.sh limit-pg).
    for n in (100, 512):
        out.append("| PostgreSQL, alertd's audit batches of %d rows, synchronous_commit=on | %s rows/s | `loadgen pg-limit --window %d`, one connection, closed loop: alertd's prepared batch statement (daemon/audit.c), its rows encoded and chain-linked by alertd's code in the mix of tcp-max, the next batch encoded while one commits |"
                   % (n, fmt(lim.get("pg-batch-%d" % n)), n))
    for n, rate, what in ((1, 1000, "1-row batches at 1,000/s (the commits of tcp-1k)"),
                          (30, 10000, "30-row batches at 333/s (10,000 rows/s, about the batches of tcp-10k)")):
        c = limits.get("pg-commit-%d" % n, {})
        if num(c, "count"):
            out.append("| latency floor of a durable commit: PostgreSQL alone, %s | p50 / p99 / p99.9 %s / %s / %s ms | `loadgen pg-limit --window %d --rate %d`, open loop (from each batch's scheduled start), the same batches, `synchronous_commit=on`, after a `CHECKPOINT`: an Ack waits for at least one such commit |"
                       % (what, fmt(num(c, "p50_ms")), fmt(num(c, "p99_ms")),
                          fmt(num(c, "p999_ms")), n, rate))
    c = limits.get("pg-sustained-30", {})
    if num(c, "count"):
        out.append("| the same 30-row commits sustained for 45 s | p50 / p99 / p99.9 / max %s / %s / %s / %s ms | `loadgen pg-limit --window 30 --rate 10000 --duration 45` after a `CHECKPOINT` and `sync`: the kernel writes back the first seconds' pages while it runs, as in sustained-10k |"
                   % (fmt(num(c, "p50_ms")), fmt(num(c, "p99_ms")),
                      fmt(num(c, "p999_ms")), fmt(num(c, "max_ms"))))
    if shared:
        out.append("| the cores shared by PostgreSQL and Redis alone | %s events/s | %d cores x 1 s / (PostgreSQL's CPU per row in 512-row batches, %s µs, its backend and every other server process, + Redis's CPU per event in 64-event calls, %s µs), from /proc: the most this machine could take with no alertd and no client, if the two overlapped perfectly |"
                   % (fmt(shared[0]), shared[1], fmt(shared[2]), fmt(shared[3])))
    out.append("")
    out.append("Machine: " + "; ".join(machine) + ".  ")
    out.append("Versions: " + "; ".join(versions) + ".  ")
    out.append("Command: `%s`." % command)
    return "\n".join(out)


def main():
    res, md = sys.argv[1], pathlib.Path(sys.argv[2])
    body = build(*parse(res), command="make bench")
    text = md.read_text() if md.exists() else (
        "# alertd benchmarks\n\n%s\n%s\n" % (BEGIN, END))
    if BEGIN not in text or END not in text:
        text += "\n%s\n%s\n" % (BEGIN, END)
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    md.write_text(head + BEGIN + "\n" + body + "\n" + END + tail)


if __name__ == "__main__":
    main()
