/* Passes livegraft's checks of an agent library (an x86-64 shared object exporting
 * livegraft_agent_version) and kills its host as soon as it is loaded: a target that dies in
 * the middle of an injection, at a deterministic moment (tests/e2e/cli_errors_test.cpp). */
#include <unistd.h>

const char* livegraft_agent_version(void) { return "dying test agent"; }

__attribute__((constructor)) static void die_on_load(void) { _exit(3); }
