// ported_pipe — a child sends a list through a Pipe (Python original: ported_pipe.py).
//
//   Python                                      mproc
//   parent_conn, child_conn = Pipe()            auto [parent_conn, child_conn] = mproc::Pipe();
//   Process(target=f, args=(child_conn,))       mproc::Process p(f, std::move(child_conn));
//                                               a Connection is move-only (it owns a socket):
//                                               move it into the Process, or pass
//                                               std::ref(child_conn) to keep it here too
//   conn.send([42, None, 'hello'])              conn.send(std::tuple{42, std::nullopt, "hello"})
//                                               (a fixed-shape list is a tuple; None: nullopt)
//   parent_conn.recv()                          parent_conn.recv<Item>() (the type is named)
//   conn.close()                                conn.close() (or its destructor)
#include <mproc/mproc.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

namespace {

using Item = std::tuple<int, std::optional<int>, std::string>;

void f(mproc::Connection conn) {
  conn.send(Item{42, std::nullopt, "hello"});
  conn.close();
}

}  // namespace

int main() {
  auto [parent_conn, child_conn] = mproc::Pipe();
  mproc::Process p(f, std::move(child_conn));
  p.start();
  auto [number, nothing, word] = parent_conn.recv<Item>();
  std::printf("[%d, %s, '%s']\n", number, nothing ? "?" : "None", word.c_str());   // [42, None, 'hello']
  p.join();
  return p.exitcode() == 0 ? 0 : 1;
}
