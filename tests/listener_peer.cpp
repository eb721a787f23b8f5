// The mproc side of tests/python/interop.py: a Listener or a Client that the real python3
// talks to with multiprocessing.connection (or with a hand-played 3.12 handshake).
//
//   listener_peer serve ADDRESS KEY    prints "READY <address>", then echoes every bytes
//                                      message of every connection until one says b"quit";
//                                      prints "AUTH-FAILED" for each refused peer.
//   listener_peer connect ADDRESS KEY  connects, sends messages of several sizes, checks the
//                                      echoes, sends b"quit", prints "CLIENT-OK".
// ADDRESS: tcp:HOST:PORT, unix:PATH or abstract:NAME. KEY: the key, or "-" for none.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <iostream>
#include <string>

namespace {

mproc::Address parse(const std::string& text) {
  auto colon = text.find(':');
  std::string kind = text.substr(0, colon), rest = text.substr(colon + 1);
  if (kind == "unix") return mproc::Address::unix_path(rest);
  if (kind == "abstract") return mproc::Address::abstract(rest);
  auto last = rest.rfind(':');
  return mproc::Address::tcp(rest.substr(0, last), static_cast<std::uint16_t>(std::stoi(rest.substr(last + 1))));
}

std::optional<std::string> key_of(const std::string& text) {
  if (text == "-") return std::nullopt;
  return text;
}

std::string as_text(const std::vector<std::byte>& bytes) { return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()); }

int serve(const mproc::Address& address, std::optional<std::string> key) {
  mproc::Listener listener(address, {.authkey = std::move(key)});
  std::cout << "READY " << listener.address().to_string() << std::endl;
  for (;;) {
    try {
      mproc::Connection c = listener.accept();
      for (;;) {
        auto message = c.recv_bytes();
        if (as_text(message) == "quit") return 0;
        c.send_bytes(message);
      }
    } catch (const mproc::AuthenticationError& e) {
      std::cout << "AUTH-FAILED " << e.what() << std::endl;
    } catch (const mproc::EOFError&) {
    }
  }
}

int connect(const mproc::Address& address, std::optional<std::string> key) {
  mproc::Connection c = mproc::Client(address, {.authkey = std::move(key)});
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{100}, std::size_t{70000}, std::size_t{3 << 20}}) {
    std::string message(size, 'x');
    for (std::size_t i = 0; i < size; ++i) message[i] = static_cast<char>('a' + i % 26);
    c.send_bytes(message);
    if (as_text(c.recv_bytes()) != message) {
      std::cout << "MISMATCH at size " << size << std::endl;
      return 1;
    }
  }
  c.send_bytes(std::string_view("quit"));
  std::cout << "CLIENT-OK" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: listener_peer serve|connect ADDRESS KEY\n";
    return 2;
  }
  try {
    const std::string mode = argv[1];
    if (mode == "serve") return serve(parse(argv[2]), key_of(argv[3]));
    return connect(parse(argv[2]), key_of(argv[3]));
  } catch (const std::exception& e) {
    std::cout << "ERROR " << e.what() << std::endl;
    return 1;
  }
}
