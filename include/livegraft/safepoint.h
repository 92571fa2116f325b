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

#ifdef __cplusplus
extern "C" {
#endif

void livegraft_safepoint(void);

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
