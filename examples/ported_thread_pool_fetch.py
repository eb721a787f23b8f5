# The Python original of ported_thread_pool_fetch.cpp (concurrent.futures documentation,
# "ThreadPoolExecutor Example"). The documented example downloads real pages; here
# load_url reads from a small local table after a delay, so the example runs offline.
import concurrent.futures
import time

PAGES = {
    'http://www.foxnews.com/': 'x' * 1200,
    'http://www.cnn.com/': 'x' * 3400,
    'http://europe.wsj.com/': 'x' * 560,
    'http://www.bbc.co.uk/': 'x' * 2300,
}
URLS = list(PAGES) + ['http://nonexistent-subdomain.python.org/']


# Retrieve a single page and report the URL and contents
def load_url(url, timeout):
    time.sleep(0.02)                 # the network
    if url not in PAGES:
        raise OSError('[Errno -2] Name or service not known')
    return PAGES[url]


# We can use a with statement to ensure threads are cleaned up promptly
with concurrent.futures.ThreadPoolExecutor(max_workers=5) as executor:
    # Start the load operations and mark each future with its URL
    future_to_url = {executor.submit(load_url, url, 60): url for url in URLS}
    for future in concurrent.futures.as_completed(future_to_url):
        url = future_to_url[future]
        try:
            data = future.result()
        except Exception as exc:
            print('%r generated an exception: %s' % (url, exc))
        else:
            print('%r page is %d bytes' % (url, len(data)))
