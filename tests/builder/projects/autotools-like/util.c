#include "config.h"

int util_value(int i) { return BASE + i; }
