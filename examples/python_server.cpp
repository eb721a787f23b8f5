// Talking to Python (docs/guide.md): a C++ service that a Python program drives with the
// library it already uses, multiprocessing.connection. Run this, then
// examples/python_client.py with the address it prints:
//
//   $ ./python_server                     # listening on 127.0.0.1:41233
//   $ python3 python_client.py 127.0.0.1 41233
//
// The Python side sends text commands with send_bytes(); each is answered with
// send_bytes(). Both sides hold the same authkey: Python's own handshake proves it.
#include <mproc/mproc.hpp>

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

namespace {

std::string as_text(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// "square 7" -> "49"; "sum 1 2 3" -> "6".
std::string handle(const std::string& command) {
  std::istringstream in(command);
  std::string verb;
  in >> verb;
  long long value = 0, total = 0;
  if (verb == "square" && in >> value) return std::to_string(value * value);
  if (verb == "sum") {
    while (in >> value) total += value;
    return std::to_string(total);
  }
  return "error: unknown command '" + command + "'";
}

}  // namespace

int main(int argc, char** argv) {
  const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 0);  // 0: the kernel picks
  mproc::Listener listener(mproc::Address::tcp("127.0.0.1", port), {.authkey = "example key"});
  std::cout << listener.address().host() << " " << listener.address().port() << std::endl;
  std::cerr << "listening on " << listener.address().to_string() << "\n";

  for (;;) {
    mproc::Connection c;
    try {
      c = listener.accept();
    } catch (const mproc::AuthenticationError& e) {
      std::cerr << "refused: " << e.what() << "\n";  // a wrong key: serve the next one
      continue;
    }
    std::cerr << "connection from " << listener.last_accepted()->to_string() << "\n";
    try {
      for (;;) {
        std::string command = as_text(c.recv_bytes());
        if (command == "bye") return 0;
        c.send_bytes(handle(command));
      }
    } catch (const mproc::EOFError&) {
      // The client left without "bye": wait for the next one.
    }
  }
}
