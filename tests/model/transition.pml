/* The per-thread transition protocol of livegraft (docs/consistency.md), for spin.
 *
 * One patch changes two functions F and G, and F calls G. Each call goes through its slot:
 * a direct slot sends every thread to one version; a thunk reads the calling thread's marker
 * (one load, the cmp) and sends it to NEW when the marker is ID, else to OLD. The controller
 * makes the slots thunks, sets the marker new threads are born with, switches threads one at a
 * time when their stack holds nothing of the side they leave (nor a decided thunk), may reverse
 * (at most twice here), and completes by storing the final version in each slot.
 *
 * "Slot" here is entry and slot together: an entry that is an int3 so far traps to the stub,
 * whose slot holds the thunk, so the controller may switch threads as soon as the int3s are
 * written (a thread past the int3 is inside the old F, which the stack rule counts).
 *
 * Invariant checked: no call chain runs two versions (the G a thread reaches from F is the
 * version of that F), and after a reversed transition completes nobody runs the unloaded NEW.
 *
 *   -DFORCE          the controller may also switch a thread without looking at its stack
 *                    (livegraft force): spin finds the mix the kernel's documentation warns of.
 *   -DNEWBORN_EARLY  new threads get the target marker before every slot is a thunk: spin
 *                    finds why the agent sets it only after the last entry jump is written.
 */

#define OLD    0
#define NEW    1
#define THUNK  2

#define NONE   0   /* marker: no transition */
#define ID     1   /* marker: this transition's target universe */

#define NT     3   /* threads 0 and 1 exist; thread 2 may be created by one of them */
#ifndef REVERSALS
#define REVERSALS 1
#endif
#ifndef CALLS
#define CALLS  2   /* calls of F per thread */
#endif

byte slotF = OLD, slotG = OLD;
bool reversed = false;
byte newborn = NONE;
byte marker[NT];
bool alive[NT];
short cv[NT];        /* version of the F on the thread's stack; -1: none */
bool inthunk[NT];    /* in a thunk after its cmp: the version is decided */
byte dv[NT];         /* ... and this is it */
bool entering[NT];   /* jumped through a direct slot, at the entry of version dv */
short gone = -1;     /* a version whose code was unloaded */
byte reversals = 0;
bool spawned = false;  /* one new thread per run */

/* jmp *slot (one load: a direct slot lands the thread in that version's code at once), then
   in a thunk the cmp on the marker (one load). Until the caller records the version on its
   stack, the thread is "in transit": in a thunk (any version: the controller treats a pc in a
   thunk as blocking) or at the entry of the version it jumped to. */
inline call(slot, t, v) {
  byte s;
  atomic {
    s = slot;
    if
    :: s != THUNK -> v = s; dv[t] = v; entering[t] = true
    :: else -> skip
    fi
  }
  if
  :: s == THUNK -> atomic { inthunk[t] = true; v = (marker[t] == ID -> NEW : OLD); dv[t] = v }
  :: else -> skip
  fi;
  assert(v != gone)
}

proctype Thread(byte t) {
  byte v, w, calls = 0;
  cv[t] = -1;
  do
  :: calls < CALLS -> calls++;
     call(slotF, t, v);
     atomic { cv[t] = v; inthunk[t] = false; entering[t] = false };
     call(slotG, t, w);
     atomic { assert(w == cv[t]); inthunk[t] = false; entering[t] = false };
     cv[t] = -1
  :: /* clone: the controller knows the child before it runs (PTRACE_O_TRACECLONE); it starts
        with the marker of the TLS initialization image */
     atomic { t < NT - 1 && !spawned -> spawned = true; alive[NT - 1] = true; marker[NT - 1] = newborn; run Thread(NT - 1) }
  :: calls == CALLS -> break  /* a bounded run keeps the state space finite */
  od;
  /* the thread exits: the controller drops it */
  atomic { alive[t] = false; cv[t] = -1 }
}

inline goal_marker(m) { m = (reversed -> NONE : ID) }
inline on_goal(t, r) { r = ((marker[t] == ID) != reversed) }
/* What keeps a thread from moving: code of the side it leaves on its stack, or a decided thunk. */
inline blocked(t, r) {
  r = (inthunk[t] || (entering[t] && dv[t] != (reversed -> OLD : NEW)) || (cv[t] >= 0 && cv[t] != (reversed -> OLD : NEW)))
}

active proctype Controller() {
  byte t, m;
  bool r, b, all;
  alive[0] = true; alive[1] = true;
  run Thread(0); run Thread(1);
#ifdef NEWBORN_EARLY
  newborn = ID;
#endif
  slotF = THUNK;          /* atomic 8-byte stores by the agent (or the entry jumps, via int3) */
  slotG = THUNK;
  newborn = ID;           /* poke_finish: dispatch is live for every function */
  do
  :: select(t : 0 .. NT - 1);
     atomic {
       if
       :: alive[t] ->
          on_goal(t, r); blocked(t, b);
          if
          :: !r && !b -> goal_marker(m); marker[t] = m
#ifdef FORCE
          :: !r -> goal_marker(m); marker[t] = m
#endif
          :: else -> skip
          fi
       :: else -> skip
       fi
     }
  :: reversals < REVERSALS ->
     atomic { reversed = !reversed; newborn = (reversed -> NONE : ID); reversals++ }
  :: atomic {
       all = true;
       t = 0;
       do
       :: t < NT -> if :: alive[t] -> on_goal(t, r); all = all && r :: else -> skip fi; t++
       :: else -> break
       od;
       all
     } -> break
  od;
  /* complete: slots go straight to the final version; then new threads get "no transition" */
  slotF = (reversed -> OLD : NEW);
  slotG = (reversed -> OLD : NEW);
  newborn = NONE;
  /* a reversed apply unloads the patch: nobody may be in NEW code now */
  atomic {
    if
    :: reversed ->
       t = 0;
       do
       :: t < NT -> assert(!(alive[t] && (cv[t] == NEW || ((inthunk[t] || entering[t]) && dv[t] == NEW)))); t++
       :: else -> break
       od;
       gone = NEW
    :: else -> skip
    fi
  }
}
