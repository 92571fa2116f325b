/*
 * livegraft safepoint API: for threads that never leave patched code on their own (an event
 * loop whose handler is almost always running), so that the per-thread consistency model can
 * switch them (docs/consistency.md, "Safepoints").
 *
 *   for (;;) {
 *     handle_one_request();        // a patched function
 *     livegraft_safepoint();       // here the stack holds only this loop's callers
 *   }
 *
 * livegraft_safepoint() is exported by liblivegraft-agent.so. Outside a transition, or when the
 * calling thread is already switched, it returns at once (a few loads). Otherwise the thread
 * waits in it (at most 150 ms, at most once every 2 s) so that the controller, which stops it
 * there and unwinds its stack with its reliable unwinder, can switch it if none of its callers
 * is an affected function. It never fails and never blocks longer than that.
 *
 * A program that may run without the agent (injected later) calls
 * livegraft_safepoint_if_loaded(), which finds the agent's function once it is loaded.
 */
#ifndef LIVEGRAFT_SAFEPOINT_H
#define LIVEGRAFT_SAFEPOINT_H

#include <ucontext.h>

#ifdef __cplusplus
extern "C" {
#endif

void livegraft_safepoint(void);

/*
 * Coroutines, fibers, green threads (docs/consistency.md, "Stack switching").
 *
 * A program that switches stacks in user space keeps suspended frames on stacks no thread's
 * registers point to, so livegraft cannot see them: `apply` and `revert` refuse a process that
 * imports or defines swapcontext, makecontext, setcontext, boost.context's jump_fcontext and
 * other well-known switching primitives. A scheduler that wants to be patched live declares its
 * suspended contexts instead:
 *
 *   livegraft_coroutines_declare();          // once, before the first switch
 *   ...
 *   livegraft_swapcontext(&self->ctx, &next->ctx);   // instead of swapcontext(3), everywhere
 *
 * Every context suspended through livegraft_swapcontext() is recorded (its saved registers)
 * in the agent's table until it resumes; the controller unwinds each recorded context like a
 * thread, and a suspended context with an affected function on its stack keeps the switch
 * waiting (stop-the-world) or keeps the thread that suspended it pending (per-thread: a context
 * is assumed to resume on the thread that suspended it; a scheduler that migrates contexts
 * between threads must use --model stop-the-world). The declaration is a promise: every stack
 * switch of the process goes through livegraft_swapcontext(); a plain swapcontext() after it
 * leaves a context livegraft cannot see.
 *
 * The agent must be loaded before the first switch (link with liblivegraft-agent.so or
 * LD_PRELOAD it): contexts suspended before it was loaded are unknown. The table holds 4096
 * suspended contexts; more make `apply` refuse until they resume (never a silent miss).
 *
 * livegraft_coroutines_declare() returns 0. livegraft_swapcontext() behaves as swapcontext(3):
 * 0 when the context is resumed, -1 with errno set when getcontext/setcontext fail.
 */
int livegraft_coroutines_declare(void);
int livegraft_swapcontext(ucontext_t* from, const ucontext_t* to);

#ifndef LIVEGRAFT_NO_DLSYM
#include <dlfcn.h>
/* A preloaded agent is in the global scope (RTLD_DEFAULT finds it); an injected one is
 * dlopen'ed RTLD_LOCAL and is found by its soname. Until it is loaded each call costs a lookup
 * (the dynamic loader's lock): call it between requests, not in a tight inner loop. */
static inline void livegraft_safepoint_if_loaded(void) {
  static void (*volatile fn)(void);
  if (!fn) {
    void (*f)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "livegraft_safepoint");
    if (!f) {
      void* h = dlopen("liblivegraft-agent.so", RTLD_NOW | RTLD_NOLOAD);
      if (h) f = (void (*)(void))dlsym(h, "livegraft_safepoint");
    }
    if (!f) return;
    fn = f;
  }
  fn();
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* LIVEGRAFT_SAFEPOINT_H */
