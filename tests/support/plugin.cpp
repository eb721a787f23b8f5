#include "support/plugin.hpp"

namespace mproc_test_plugin {
int triple(int x) { return 3 * x; }
}  // namespace mproc_test_plugin
