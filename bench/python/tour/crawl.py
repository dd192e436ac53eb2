"""Tour experiment 8: a small crawl. Fetch PAGES pages from the tour's loopback HTTP server
(BASE_URL/page/0 ...) and append each page's <h1> to a Manager list: serially, on a
ThreadPoolExecutor and on a multiprocessing Pool. Usage: crawl.py BASE_URL PAGES WORKERS."""
import json
import re
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Manager, Pool


def fetch(result_list, url):
    with urllib.request.urlopen(url, timeout=30) as response:
        page = response.read().decode()
    match = re.search(r"<h1>(.*?)</h1>", page)
    result_list.append(match.group(1) if match else f"(no title at {url})")


def crawl(kind, manager, links, workers):
    result_list = manager.list()
    t = time.perf_counter()
    if kind == "serial":
        for link in links:
            fetch(result_list, link)
    elif kind == "threads":
        with ThreadPoolExecutor(max_workers=workers) as ex:
            list(ex.map(fetch, [result_list] * len(links), links))
    else:
        with Pool(workers) as pool:
            pool.starmap(fetch, [(result_list, link) for link in links])
    wall = time.perf_counter() - t
    titles = list(result_list)
    return wall, titles


if __name__ == "__main__":
    base, pages, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    links = [f"{base}/page/{i}" for i in range(pages)]
    out = {"pages": pages, "workers": workers}
    with Manager() as manager:
        for kind in ("serial", "threads", "processes"):
            wall, titles = crawl(kind, manager, links, workers)
            out[f"{kind}_s"] = wall
            out[f"{kind}_titles"] = len(titles)
            out[f"{kind}_distinct_titles"] = len(set(titles))
    print(json.dumps(out))
