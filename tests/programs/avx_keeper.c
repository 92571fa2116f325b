/* The -fipa-ra hazard with AVX state: scale() is a leaf that touches only %eax and %edi, so GCC
 * lets its callers keep vector values across the call in registers the ABI says a call
 * clobbers. sum() keeps a 256-bit value in a ymm register, upper half included (built with
 * -mavx2: avx_keeper). Built with AVX-512 as well (avx512_keeper), sum512() keeps twenty zmm
 * values, so some in zmm16-31, and a mask in a k register.
 * same() returns its argument without writing xmm0, so it leaves the upper half of ymm0 alone
 * while returning in xmm0: a thunk cannot keep that half apart from the value.
 * "s N" prints sum(N), "z N" prints sum512(N) (AVX-512 builds only), "d N" prints same(N),
 * "q" quits. */
#include <immintrin.h>

#include "target_common.h"

__attribute__((noinline)) int scale(int x) { return x * 3 + 1; }

static volatile int same_calls;
__attribute__((noinline)) double same(double x) {
  same_calls = same_calls + 1;  /* long enough for the 5-byte jump */
  return x;
}

static int hsum256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_hadd_epi32(s, s);
  s = _mm_hadd_epi32(s, s);
  return _mm_cvtsi128_si32(s);
}

/* (2(N + i) + scale(N)) summed over the lanes i = 0..7: 40N + 64 with the original scale(). */
__attribute__((noinline)) int sum(int n) {
  __m256i v = _mm256_add_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  v = _mm256_add_epi32(v, v);
  int k = scale(n);
  return hsum256(_mm256_add_epi32(v, _mm256_set1_epi32(k)));
}

#ifdef __AVX512F__
/* Twenty 512-bit values and a mask live across the call: zmm0-15 cannot hold them all. */
__attribute__((noinline)) int sum512(int n) {
  __m512i base = _mm512_add_epi32(_mm512_set1_epi32(n), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
#define V(j) __m512i v##j = _mm512_mullo_epi32(base, _mm512_set1_epi32(n + j));
  V(0) V(1) V(2) V(3) V(4) V(5) V(6) V(7) V(8) V(9) V(10) V(11) V(12) V(13) V(14) V(15) V(16) V(17) V(18) V(19)
#undef V
  __mmask16 m = _mm512_cmpgt_epi32_mask(base, _mm512_set1_epi32(n + 7)); /* lanes 8..15 */
  int k = scale(n);
  __m512i acc = _mm512_set1_epi32(k);
#define A(j) acc = _mm512_mask_add_epi32(acc, m, acc, v##j);
  A(0) A(1) A(2) A(3) A(4) A(5) A(6) A(7) A(8) A(9) A(10) A(11) A(12) A(13) A(14) A(15) A(16) A(17) A(18) A(19)
#undef A
  return _mm512_reduce_add_epi32(acc);
}
#endif

int main(void) {
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    int n = 0;
    if (sscanf(line, "s %d", &n) == 1) printf("sum %d\n", sum(n));
    else if (sscanf(line, "d %d", &n) == 1) printf("same %g\n", same(n));
#ifdef __AVX512F__
    else if (sscanf(line, "z %d", &n) == 1) printf("sum512 %d\n", sum512(n));
#endif
    else if (line[0] == 'q') break;
    fflush(stdout);
  }
  return 0;
}
