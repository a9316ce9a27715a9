#pragma once
// libnuma. Thread pinning (pthread_setaffinity_np, which needs _GNU_SOURCE) will go through
// a C wrapper like CApusSys so that no system header is compiled with different macros here.
#include <numa.h>
