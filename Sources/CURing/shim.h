#pragma once
#include <liburing.h>

// Flag macros built from enum bits are invisible to Swift; re-export them.
static const unsigned int apus_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const unsigned int apus_IOSQE_IO_DRAIN = IOSQE_IO_DRAIN;
static const unsigned int apus_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const unsigned int apus_IOSQE_IO_HARDLINK = IOSQE_IO_HARDLINK;
static const unsigned int apus_IOSQE_ASYNC = IOSQE_ASYNC;
