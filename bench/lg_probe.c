/* lg_probe: `loadgen cpu-probe`, a diagnostic for the bench's latency
 * tails (docs/BENCHMARKS.md, 40; scripts/bench.sh BENCH_PROBE=1).
 *
 * Every 2 ms it runs the same fixed piece of arithmetic and measures it
 * twice: by the monotonic clock (wall) and by its own thread's CPU clock.
 * Wall far above CPU: the probe was preempted, the cores were taken.
 * CPU itself far above its usual value: the core ran slowly for everyone
 * (a hypervisor taking the virtual CPU away is charged to whatever thread
 * was running). Once a second it prints
 *
 *   PROBE at=EPOCH_S n=N wall_p50_us=X wall_max_us=X cpu_p50_us=X
 *         cpu_max_us=X preempted=N
 *
 * (preempted: the samples whose wall time was over twice their CPU time;
 * at: the realtime clock at the second's start, to line up with
 * PostgreSQL's log and the bench's runs.txt). Costs about 1.5 % of a
 * core. Runs for --duration seconds (default: until killed). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lg.h"

#define PROBE_EVERY_NS 2000000L
#define PROBE_WORK 20000     /* about 30 us on the build machine */
#define PROBE_PER_S 512      /* more than 1 s / PROBE_EVERY_NS */

static int64_t probe_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int probe_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void probe_print(double at, int64_t *wall, int64_t *cpu, int n,
			int preempted)
{
	int64_t wmax, cmax;

	if (n == 0)
		return;
	qsort(wall, (size_t)n, sizeof(*wall), probe_cmp);
	qsort(cpu, (size_t)n, sizeof(*cpu), probe_cmp);
	wmax = wall[n - 1];
	cmax = cpu[n - 1];
	printf("PROBE at=%.3f n=%d wall_p50_us=%.1f wall_max_us=%.1f"
	       " cpu_p50_us=%.1f cpu_max_us=%.1f preempted=%d\n",
	       at, n, (double)wall[n / 2] / 1e3, (double)wmax / 1e3,
	       (double)cpu[n / 2] / 1e3, (double)cmax / 1e3, preempted);
	fflush(stdout);
}

int lg_cpu_probe(void)
{
	static int64_t wall[PROBE_PER_S], cpu[PROBE_PER_S];
	volatile uint64_t x = 1;
	int64_t start = probe_ns(CLOCK_MONOTONIC), second = start;
	double at = (double)probe_ns(CLOCK_REALTIME) / 1e9;
	int n = 0, preempted = 0;

	for (;;) {
		int64_t w0, w1, c0, c1, now;
		struct timespec pause = {0, PROBE_EVERY_NS};

		w0 = probe_ns(CLOCK_MONOTONIC);
		c0 = probe_ns(CLOCK_THREAD_CPUTIME_ID);
		for (int i = 0; i < PROBE_WORK; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		w1 = probe_ns(CLOCK_MONOTONIC);
		c1 = probe_ns(CLOCK_THREAD_CPUTIME_ID);
		if (n < PROBE_PER_S) {
			wall[n] = w1 - w0;
			cpu[n] = c1 - c0;
			preempted += wall[n] > 2 * cpu[n];
			n++;
		}
		now = probe_ns(CLOCK_MONOTONIC);
		if (now - second >= 1000000000) {
			probe_print(at, wall, cpu, n, preempted);
			n = preempted = 0;
			second = now;
			at = (double)probe_ns(CLOCK_REALTIME) / 1e9;
		}
		if (lg_opt.duration_s > 0 &&
		    (double)(now - start) / 1e9 >= lg_opt.duration_s)
			break;
		nanosleep(&pause, NULL);
	}
	probe_print(at, wall, cpu, n, preempted);
	return 0;
}
