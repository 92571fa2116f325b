#include "here.h"
unsigned unit_id(int x) {
  if (x < 0) return 0;  // the fix
  return Location(__FILE__).id(hash_name) + x;
}
