// Target program for tests/unit/unwind_stack_test.cpp.
// Mode "raise": the handler runs inside raise(); mode "spin": SIGALRM interrupts a busy loop;
// mode "altstack": a second thread raises the signal and its handler runs on a sigaltstack that
// lies in main's stack frame, far *above* the thread's own stack.
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
volatile int sink, stop;
volatile unsigned long counter;
static char* alt_stack;
__attribute__((noinline)) void handler(int sig) {
  (void)sig;
  write(1, "ready\n", 6);
  while (!stop) pause();
}
__attribute__((noinline)) void interrupted_fn(void) { raise(SIGUSR1); sink++; }
__attribute__((noinline)) void spin_fn(void) { while (!stop) counter++; }
static void* alt_thread(void* arg) {
  stack_t ss;
  memset(&ss, 0, sizeof ss);
  ss.ss_sp = alt_stack;
  ss.ss_size = 65536;
  sigaltstack(&ss, 0);
  interrupted_fn();
  return arg;
}
int main(int argc, char** argv) {
  char on_main_stack[65536];
  alt_stack = on_main_stack;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &sa, 0);
  sigaction(SIGALRM, &sa, 0);
  if (argc > 1 && strcmp(argv[1], "spin") == 0) {
    struct itimerval it = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, 0);
    spin_fn();
  } else if (argc > 1 && strcmp(argv[1], "altstack") == 0) {
    pthread_t t;
    pthread_create(&t, 0, alt_thread, 0);
    pthread_join(t, 0);
  } else {
    interrupted_fn();
  }
  return sink + on_main_stack[100];
}
