// mproc/mproc.hpp — everything mproc offers: Python's multiprocessing and
// concurrent.futures for C++20 on Linux.
#pragma once

#include "mproc/address.hpp"
#include "mproc/async_result.hpp"
#include "mproc/auth.hpp"
#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/frame.hpp"
#include "mproc/future.hpp"
#include "mproc/imap_iterator.hpp"
#include "mproc/listener.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/process_pool_executor.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"
#include "mproc/thread_pool.hpp"
#include "mproc/thread_pool_executor.hpp"
