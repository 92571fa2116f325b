#include "here.h"
unsigned unit_id(int x) { return Location(__FILE__).id(hash_name) + x; }
