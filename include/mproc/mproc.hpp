// mproc/mproc.hpp — everything mproc offers: Python's multiprocessing for C++20 on Linux.
#pragma once

#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/frame.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"
