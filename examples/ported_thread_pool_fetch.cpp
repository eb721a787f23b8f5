// ported_thread_pool_fetch — the concurrent.futures documentation's ThreadPoolExecutor
// example, fetching pages (simulated locally: a table and a delay, no network) and mapping
// each future back to its URL (Python original: ported_thread_pool_fetch.py).
//
//   Python                                      mproc
//   with ThreadPoolExecutor(max_workers=5)      mproc::ThreadPoolExecutor executor({.max_workers = 5});
//     as executor:                              (its destructor is shutdown(wait=True), as `with`)
//   {executor.submit(load_url, url, 60): url    std::unordered_map<mproc::Future<std::string>,
//    for url in URLS}                           std::string>: a Future hashes, copies are equal
//   as_completed(future_to_url)                 mproc::as_completed(futures) over a vector of the
//                                               keys (it takes a range of futures, not a map)
//   future_to_url[future]                       future_to_url.at(future)
//   except Exception as exc:                    catch (const std::exception& exc): the task's
//                                               exception, rethrown with its type
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

const std::map<std::string, std::string> PAGES = {
    {"http://www.foxnews.com/", std::string(1200, 'x')},
    {"http://www.cnn.com/", std::string(3400, 'x')},
    {"http://europe.wsj.com/", std::string(560, 'x')},
    {"http://www.bbc.co.uk/", std::string(2300, 'x')},
};

// Retrieve a single page and report the URL and contents
std::string load_url(const std::string& url, int /*timeout*/) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));   // the network
  auto page = PAGES.find(url);
  if (page == PAGES.end()) throw std::runtime_error("[Errno -2] Name or service not known");
  return page->second;
}

}  // namespace

int main() {
  std::vector<std::string> URLS;
  for (const auto& [url, page] : PAGES) URLS.push_back(url);
  URLS.push_back("http://nonexistent-subdomain.python.org/");

  mproc::ThreadPoolExecutor executor({.max_workers = 5});
  // Start the load operations and mark each future with its URL
  std::unordered_map<mproc::Future<std::string>, std::string> future_to_url;
  std::vector<mproc::Future<std::string>> futures;
  for (const std::string& url : URLS) {
    futures.push_back(executor.submit(load_url, url, 60));
    future_to_url.emplace(futures.back(), url);
  }
  for (auto& future : mproc::as_completed(futures)) {
    const std::string& url = future_to_url.at(future);
    try {
      std::string data = future.result();
      std::printf("'%s' page is %zu bytes\n", url.c_str(), data.size());
    } catch (const std::exception& exc) {
      std::printf("'%s' generated an exception: %s\n", url.c_str(), exc.what());
    }
  }
  return 0;
}
