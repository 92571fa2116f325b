// Target for lg_process tests: N worker threads (argv[1], default 8) count in a loop; the main
// thread prints "tick T value V" every 5 ms (V is g_value, which tests overwrite) and "usr1"
// whenever SIGUSR1 arrives. Prints "addr value 0x..." first. With argv[2] == "idle" the workers
// block in pause() instead (for many threads on few cores); with "leader-exits" the main
// thread calls pthread_exit once the workers run and worker 0 prints the ticks.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile long g_value = 1;
volatile long g_counters[4096];
static volatile sig_atomic_t g_usr1;
static int g_leader_exits;

static void on_usr1(int sig) {
  (void)sig;
  g_usr1++;
  write(1, "usr1\n", 5);
}

static void* idle_worker(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

static void print_ticks(void) {
  for (long tick = 0;; ++tick) {
    printf("tick %ld value %ld\n", tick, g_value);
    usleep(5000);
  }
}

static void* worker(void* arg) {
  long i = (long)arg;
  if (i == 0 && g_leader_exits) print_ticks();
  for (;;) {
    g_counters[i]++;
    if ((g_counters[i] & 1023) == 0) usleep(100);
  }
  return NULL;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int n = argc > 1 ? atoi(argv[1]) : 8;
  int idle = argc > 2 && strcmp(argv[2], "idle") == 0;
  g_leader_exits = argc > 2 && strcmp(argv[2], "leader-exits") == 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (long i = 0; i < n && i < 4096; ++i) {
    pthread_t t;
    if (pthread_create(&t, &attr, idle ? idle_worker : worker, (void*)i) != 0) {
      printf("pthread_create failed\n");
      return 1;
    }
  }
  printf("addr value %p counters %p\n", (void*)&g_value, (void*)g_counters);
  printf("started %d\n", n);
  if (g_leader_exits) pthread_exit(NULL);
  print_ticks();
}
