/* p11probe: drive a PKCS #11 module's slot functions from the command line,
 * to observe insert/remove detection and C_WaitForSlotEvent behaviour.
 *
 *   gcc -O2 -Wall -I/usr/include/p11-kit-1 -o p11probe p11probe.c -ldl -lpthread
 *   p11probe MODULE list
 *   p11probe MODULE watch SECONDS     C_GetSlotList(all / tokenPresent) every 10 ms, print changes
 *   p11probe MODULE poll SECONDS      C_WaitForSlotEvent(CKF_DONT_BLOCK) every 50 ms, print results
 *   p11probe MODULE wait N            N blocking C_WaitForSlotEvent(0) calls, print each result
 *   p11probe MODULE finalize MS       block in C_WaitForSlotEvent(0) on a thread, C_Finalize after MS
 *
 * C_Initialize gets CKF_OS_LOCKING_OK (as the cryptoki crate passes). Every
 * output line starts with the wall clock in ms since the epoch, so a shell can
 * correlate it with `date +%s%3N`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR p11;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define OUT(...) do { printf("%lld ", now_ms()); printf(__VA_ARGS__); fflush(stdout); } while (0)

static const char *rvname(CK_RV rv)
{
	switch (rv) {
	case CKR_OK: return "CKR_OK";
	case CKR_NO_EVENT: return "CKR_NO_EVENT";
	case CKR_CRYPTOKI_NOT_INITIALIZED: return "CKR_CRYPTOKI_NOT_INITIALIZED";
	case CKR_FUNCTION_NOT_SUPPORTED: return "CKR_FUNCTION_NOT_SUPPORTED";
	case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
	case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
	case CKR_SLOT_ID_INVALID: return "CKR_SLOT_ID_INVALID";
	case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
	case CKR_TOKEN_NOT_RECOGNIZED: return "CKR_TOKEN_NOT_RECOGNIZED";
	case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_REMOVED: return "CKR_DEVICE_REMOVED";
	case CKR_CANT_LOCK: return "CKR_CANT_LOCK";
	default: {
		static char buf[32];
		snprintf(buf, sizeof buf, "0x%lx", (unsigned long)rv);
		return buf;
	}
	}
}

/* "n:id,id" for C_GetSlotList(present). Like most callers, first asks for
 * the count (pSlotList NULL): OpenSC rescans PC/SC readers only then. With
 * P11PROBE_NO_SIZE_QUERY set it passes a buffer straight away. */
static void slot_list(CK_BBOOL present, char *buf, size_t len)
{
	CK_SLOT_ID ids[64];
	CK_ULONG n = 64;
	CK_RV rv = CKR_OK;
	if (!getenv("P11PROBE_NO_SIZE_QUERY"))
		rv = p11->C_GetSlotList(present, NULL, &n);
	if (rv == CKR_OK && n <= 64) {
		n = 64;
		rv = p11->C_GetSlotList(present, ids, &n);
	}
	if (rv != CKR_OK) {
		snprintf(buf, len, "%s", rvname(rv));
		return;
	}
	int off = snprintf(buf, len, "%lu:", (unsigned long)n);
	for (CK_ULONG i = 0; i < n && off < (int)len; i++)
		off += snprintf(buf + off, len - off, "%s%lu", i ? "," : "", (unsigned long)ids[i]);
}

static void describe_slot(CK_SLOT_ID id)
{
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_RV rv = p11->C_GetSlotInfo(id, &si);
	if (rv != CKR_OK) {
		OUT("  slot %lu: C_GetSlotInfo %s\n", (unsigned long)id, rvname(rv));
		return;
	}
	OUT("  slot %lu: \"%.64s\" flags=0x%lx%s\n", (unsigned long)id, si.slotDescription,
	    (unsigned long)si.flags, (si.flags & CKF_TOKEN_PRESENT) ? " TOKEN_PRESENT" : "");
	if (!(si.flags & CKF_TOKEN_PRESENT))
		return;
	rv = p11->C_GetTokenInfo(id, &ti);
	if (rv == CKR_OK)
		OUT("    token \"%.32s\" model \"%.16s\" flags=0x%lx\n", ti.label, ti.model,
		    (unsigned long)ti.flags);
	else
		OUT("    C_GetTokenInfo %s\n", rvname(rv));
}

static void list(void)
{
	CK_SLOT_ID ids[64];
	CK_ULONG n = 64;
	char present[256];
	CK_RV rv = p11->C_GetSlotList(CK_FALSE, NULL, &n);
	n = 64;
	if (rv == CKR_OK)
		rv = p11->C_GetSlotList(CK_FALSE, ids, &n);
	if (rv != CKR_OK) {
		OUT("C_GetSlotList(FALSE) %s\n", rvname(rv));
		return;
	}
	slot_list(CK_TRUE, present, sizeof present);
	OUT("slots=%lu tokenPresent=%s\n", (unsigned long)n, present);
	for (CK_ULONG i = 0; i < n; i++)
		describe_slot(ids[i]);
}

struct waiter { CK_RV rv; CK_SLOT_ID slot; long long t_ret; };

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	w->rv = p11->C_WaitForSlotEvent(0, &w->slot, NULL);
	w->t_ret = now_ms();
	OUT("C_WaitForSlotEvent(0) -> %s slot=%lu\n", rvname(w->rv), (unsigned long)w->slot);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s MODULE list|watch S|poll S|wait N|finalize MS\n", argv[0]);
		return 2;
	}
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
	if (!gfl || gfl(&p11) != CKR_OK)
		return 1;
	CK_C_INITIALIZE_ARGS ia;
	memset(&ia, 0, sizeof ia);
	ia.flags = CKF_OS_LOCKING_OK;
	long long t0 = now_ms();
	CK_RV rv = p11->C_Initialize(&ia);
	OUT("C_Initialize -> %s (%lld ms)\n", rvname(rv), now_ms() - t0);
	if (rv != CKR_OK)
		return 1;

	const char *cmd = argv[2];
	long arg = argc > 3 ? atol(argv[3]) : 0;
	if (!strcmp(cmd, "list")) {
		list();
	} else if (!strcmp(cmd, "watch")) {
		char all[256] = "", pres[256] = "", a[256], p[256];
		long long end = now_ms() + arg * 1000;
		while (now_ms() < end) {
			slot_list(CK_FALSE, a, sizeof a);
			slot_list(CK_TRUE, p, sizeof p);
			if (strcmp(a, all) || strcmp(p, pres)) {
				OUT("all=%s tokenPresent=%s\n", a, p);
				strcpy(all, a);
				strcpy(pres, p);
			}
			usleep(10000);
		}
	} else if (!strcmp(cmd, "poll")) {
		long long end = now_ms() + arg * 1000;
		int calls = 0;
		while (now_ms() < end) {
			CK_SLOT_ID slot = 0;
			long long t = now_ms();
			rv = p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL);
			calls++;
			if (rv != CKR_NO_EVENT || now_ms() - t > 100) {
				OUT("C_WaitForSlotEvent(DONT_BLOCK) -> %s slot=%lu (%lld ms, call %d)\n",
				    rvname(rv), (unsigned long)slot, now_ms() - t, calls);
				if (rv == CKR_OK)
					describe_slot(slot);
			}
			usleep(50000);
		}
		OUT("poll done, %d calls\n", calls);
	} else if (!strcmp(cmd, "wait")) {
		for (long i = 0; i < arg; i++) {
			CK_SLOT_ID slot = 0;
			long long t = now_ms();
			OUT("C_WaitForSlotEvent(0) ...\n");
			rv = p11->C_WaitForSlotEvent(0, &slot, NULL);
			OUT("C_WaitForSlotEvent(0) -> %s slot=%lu after %lld ms\n", rvname(rv),
			    (unsigned long)slot, now_ms() - t);
			if (rv != CKR_OK)
				break;
			describe_slot(slot);
		}
	} else if (!strcmp(cmd, "finalize")) {
		struct waiter w = { 0 };
		pthread_t th;
		OUT("thread: C_WaitForSlotEvent(0) ...\n");
		pthread_create(&th, NULL, wait_thread, &w);
		usleep(arg * 1000);
		long long t = now_ms();
		OUT("main: C_Finalize ...\n");
		rv = p11->C_Finalize(NULL);
		OUT("main: C_Finalize -> %s (%lld ms)\n", rvname(rv), now_ms() - t);
		pthread_join(th, NULL);
		OUT("main: waiter returned %lld ms after C_Finalize was called\n", w.t_ret - t);
		return 0;
	} else {
		fprintf(stderr, "unknown command %s\n", cmd);
		return 2;
	}
	rv = p11->C_Finalize(NULL);
	OUT("C_Finalize -> %s\n", rvname(rv));
	return 0;
}
