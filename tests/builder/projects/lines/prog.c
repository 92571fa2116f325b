#include <stdio.h>
#include <unistd.h>

/* Where a function last passed: __LINE__ stored in memory (not an argument of a call, so the
 * LINE-ONLY rule cannot excuse it). */
struct where { const char* what; int line; };
struct where last;
#define NOTE(w) (last.what = (w), last.line = __LINE__)

__attribute__((noinline)) int check(int i) {
  NOTE("check");
  return i * 2;
}

/* Functions below the fix: unchanged, but every __LINE__ here moves when lines are added
 * above. */
__attribute__((noinline)) int later_a(int i) { NOTE("a"); return i + last.line; }
__attribute__((noinline)) int later_b(int i) { NOTE("b"); return i - last.line; }

int main(void) {
  for (int i = 0;; ++i) {
    printf("%d %d %d\n", check(i), later_a(i), later_b(i));
    fflush(stdout);
    sleep(1);
  }
}
