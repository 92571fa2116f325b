// Thread-local counters a function reads and writes several times: one refusal line per variable.
void note(int);
__thread int tls_count;
__thread int tls_max;

int bump(int x) {
  tls_count += x + 1;
  note(tls_count);
  if (tls_count > tls_max) tls_max = tls_count;
  note(tls_max);
  return tls_count;
}
