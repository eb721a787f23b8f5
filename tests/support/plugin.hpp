// A function that lives in a shared library (libmproc_test_plugin.so), for
// test_start_methods: a task named by a module other than the executable.
#pragma once

namespace mproc_test_plugin {
int triple(int x);
}
