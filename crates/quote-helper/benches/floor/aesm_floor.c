/*
 * aesm_floor: the least a one-request-per-connection AESM server can cost on this machine.
 *
 * An independent peer for the quote helper's benchmark, in C with no runtime: THREADS threads
 * block in accept4(), take the request, spin for SPIN_US of plain user-mode computation (in
 * place of the quote signature), send one stored response frame and close. It reads nothing
 * of the request and builds nothing: what it costs per request beyond SPIN_US is the kernel's
 * cost of the connection. Run it through run.sh, which drives it with the benchmark's own
 * clients and prints its CPU time per request.
 *
 *   aesm_floor SOCKET MODE THREADS FRAME_FILE SPIN_US
 *
 * MODE: drain    peek at the request, send, then take the request off the socket, close
 *                (what the quote helper does);
 *       nodrain  peek, send, close with the request unread (the client then sees
 *                ECONNRESET, not end-of-file, if it reads past the response);
 *       readfirst read the request, send, close (freeing the client's sent data while it
 *                waits for the response wakes it once for nothing).
 *
 * SIGUSR1 writes the process's CPU time in nanoseconds to stderr.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { DRAIN, NODRAIN, READFIRST };

static int listen_fd, mode;
static char frame[65536];
static size_t frame_len;
static long spin_iters;
static volatile unsigned long sink;

static void spin(long n)
{
	unsigned long x = 0x9e3779b97f4a7c15UL;
	for (long i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	sink = x;
}

static double thread_cpu_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *serve(void *unused)
{
	char buf[2048];
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (recv(fd, buf, sizeof buf, mode == READFIRST ? 0 : MSG_PEEK) > 0) {
			spin(spin_iters);
			if (send(fd, frame, frame_len, MSG_DONTWAIT) < 0)
				perror("send");
			if (mode == DRAIN)
				recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		}
		close(fd);
	}
	return unused;
}

static void report(int sig)
{
	struct timespec t;
	char line[32];
	int n;
	(void)sig;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	n = snprintf(line, sizeof line, "%.0f\n", t.tv_sec * 1e9 + t.tv_nsec);
	if (write(2, line, n) < 0)
		_exit(1);
}

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	FILE *f;
	int threads;
	double spin_us;

	if (argc != 6) {
		fprintf(stderr, "usage: %s SOCKET drain|nodrain|readfirst THREADS FRAME_FILE SPIN_US\n", argv[0]);
		return 2;
	}
	mode = !strcmp(argv[2], "drain") ? DRAIN : !strcmp(argv[2], "nodrain") ? NODRAIN : READFIRST;
	threads = atoi(argv[3]);
	spin_us = atof(argv[5]);
	if (!(f = fopen(argv[4], "rb")))
		return perror(argv[4]), 1;
	frame_len = fread(frame, 1, sizeof frame, f);
	fclose(f);
	if (spin_us > 0) {
		double t0 = thread_cpu_ns();
		spin(10000000);
		spin_iters = spin_us * 1e3 / ((thread_cpu_ns() - t0) / 1e7);
	}
	if (strlen(argv[1]) >= sizeof addr.sun_path)
		return fprintf(stderr, "socket path too long\n"), 2;
	strcpy(addr.sun_path, argv[1]);
	unlink(argv[1]);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) || listen(listen_fd, 4096))
		return perror("listen"), 1;
	signal(SIGUSR1, report);
	for (int i = 0; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, serve, NULL))
			return perror("pthread_create"), 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
