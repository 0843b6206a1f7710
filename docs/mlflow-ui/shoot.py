"""Screenshot a sweep's child runs in a running MLflow UI through headless Chromium (CDP).

Not part of the package; needs only `websocket-client` (use a throwaway venv) and, for the
downscaling step, Pillow. Usage (see README.md in this folder):

    python shoot.py --ui http://127.0.0.1:5055 --cdp 9222 \
        --runs-json ids.json --out /tmp/shots

ids.json: {"exp": "1", "children": ["<run id>", ...]}.
"""

import argparse
import base64
import json
import time
import urllib.parse
import urllib.request

import websocket


class CDP:
    def __init__(self, port):
        tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        page = [t for t in tabs if t["type"] == "page"][0]
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.i = 0

    def call(self, method, **params):
        self.i += 1
        self.ws.send(json.dumps({"id": self.i, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.i:
                if "error" in m:
                    raise RuntimeError(m["error"])
                return m.get("result", {})

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def goto(self, url, wait=8):
        self.call("Page.navigate", url=url)
        time.sleep(wait)

    def viewport(self, w, h):
        self.call("Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False)
        time.sleep(1)

    def shot(self, path, clip=None):
        self.mouse("mouseMoved", 5, 5)  # no hover tooltips
        time.sleep(0.5)
        kw = {"clip": dict(clip, scale=1)} if clip else {}
        r = self.call("Page.captureScreenshot", format="png", **kw)
        open(path, "wb").write(base64.b64decode(r["data"]))
        print("wrote", path)

    def mouse(self, typ, x, y, **kw):
        self.call("Input.dispatchMouseEvent", type=typ, x=x, y=y, **kw)

    def click_xy(self, x, y):
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, button="left", buttons=1, clickCount=1)
        self.mouse("mouseReleased", x, y, button="left", clickCount=1)
        time.sleep(0.4)

    def key(self, k, vk):
        for typ in ("rawKeyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=typ,
                key=k,
                code=k,
                windowsVirtualKeyCode=vk,
                nativeVirtualKeyCode=vk,
            )

    def click_text(self, text):
        return self.js(
            "(()=>{const els=[...document.querySelectorAll('button,a,span,div,[role=tab]')].filter("
            f"e=>e.offsetParent!==null&&e.innerText&&e.innerText.trim()==={json.dumps(text)});"
            "if(!els.length) return false; els[els.length-1].click(); return true;})()"
        )

    def top_of(self, text):
        return self.js(
            "(()=>{const e=[...document.querySelectorAll('h2,h3,span,div,button')].find("
            f"e=>e.innerText&&e.innerText.trim()==={json.dumps(text)});"
            " return e?e.getBoundingClientRect().y:null;})()"
        )

    def drag_resize(self, colid, dx):
        """Widen an ag-grid column of the runs table by dragging its header resize handle."""
        xs, y = self.js(
            "(()=>{const h=document.querySelector("
            f"'.ag-header-cell[col-id={json.dumps(colid)}] .ag-header-cell-resize');"
            "if(!h) return [[],0]; const b=h.getBoundingClientRect(); const out=[];"
            "for(let x=b.x-2;x<b.x+b.width+2;x++)"
            "{if(document.elementFromPoint(x,b.y+b.height/2)===h) out.push(x);}"
            "return [out,b.y+b.height/2];})()"
        )
        if not xs:
            print("no resize handle for", colid)
            return
        x = xs[len(xs) // 2]
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, button="left", buttons=1, clickCount=1)
        for i in range(1, 21):
            self.mouse("mouseMoved", x + dx * i / 20, y, button="left", buttons=1)
            time.sleep(0.03)
        self.mouse("mouseReleased", x + dx, y, button="left", clickCount=1)
        time.sleep(0.5)

    def multiselect(self, input_id, values):
        """Type values into a (du-bois / antd) multi-select, pressing Enter after each."""
        for v in values:
            x, y = self.js(
                f"(()=>{{const b=document.getElementById({json.dumps(input_id)}).getBoundingClientRect();"
                "return [b.x+b.width/2,b.y+b.height/2];})()"
            )
            self.click_xy(x, y)
            self.call("Input.insertText", text=v)
            time.sleep(0.8)
            self.key("Enter", 13)
            time.sleep(0.6)
        self.key("Escape", 27)
        time.sleep(0.4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ui", default="http://127.0.0.1:5055")
    ap.add_argument("--cdp", type=int, default=9222)
    ap.add_argument("--runs-json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="precision,max_new_tokens,model")
    ap.add_argument(
        "--metrics", default="latency_p50_s,weight_bytes,cider"
    )  # last one colours the lines
    ap.add_argument(
        "--table-params", default="model,precision,max_new_tokens,backend,weights,device,batch_size"
    )
    ap.add_argument(
        "--table-metrics",
        default="cider,bleu_4,latency_p50_s,latency_p95_s,images_per_sec,tokens_per_sec,peak_memory_bytes,weight_bytes,energy_kwh",
    )
    a = ap.parse_args()
    ids = json.load(open(a.runs_json))
    exp, children = str(ids["exp"]), ids["children"]
    c = CDP(a.cdp)
    c.call("Page.enable")

    # (a) runs table: MLflow 3.x opens in GenAI mode; switch to "Model training", choose columns.
    c.goto(f"{a.ui}/#/experiments/{exp}")
    c.click_text("Got it")
    c.click_text("Model training")
    time.sleep(3)
    key = f'MLflowLocalStorage-1.1-ExperimentPage-["{exp}"]-ReactComponentState'
    state = json.loads(c.js(f"localStorage.getItem({json.dumps(key)})") or "{}")
    state["selectedColumns"] = [f"params.`{p}`" for p in a.table_params.split(",")] + [
        f"metrics.`{m}`" for m in a.table_metrics.split(",")
    ]
    c.js(f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(state))})")
    c.js("localStorage.setItem('mlflow.assistant.panelOpen_v1','false')")
    c.js("location.reload()")  # the runs table reads its column state from localStorage on load
    time.sleep(8)
    c.js("document.querySelector('button[aria-label=Close]')?.click()")  # assistant side panel
    c.viewport(2560, 880)
    c.js("document.querySelector('button[aria-label=\"Toggle sidebar\"]')?.click()")
    time.sleep(1)
    c.js("document.querySelector('.ag-row button.du-bois-light-btn-link')?.click()")  # expand the parent row
    time.sleep(3)
    for col, dx in [
        ("params.`model`", 70),
        ("params.`max_new_tokens`", 30),
        ("metrics.`tokens_per_sec`", 20),
        ("metrics.`peak_memory_bytes`", 30),
        ("metrics.`images_per_sec`", 20),
        ("attributes.`Run Name`", 110),
    ]:
        c.drag_resize(col, dx)  # right to left, so the handles found later have not moved
    c.shot(f"{a.out}/runs.png")

    # (b) compare page + (c) parallel coordinates with chosen axes.
    def q(v):
        return urllib.parse.quote(json.dumps(v, separators=(",", ":")))
    c.viewport(1800, 1400)
    c.goto(f"{a.ui}/#/compare-runs?runs={q(children)}&experiments={q([exp])}", 10)
    c.click_text("Clear All")
    time.sleep(1)
    c.multiselect("dubois-select-1", a.params.split(","))
    c.multiselect("dubois-select-2", a.metrics.split(","))
    c.js("document.activeElement && document.activeElement.blur()")
    time.sleep(1.5)
    y = c.top_of("Run details")
    c.shot(f"{a.out}/parallel.png", clip={"x": 40, "y": 90, "width": 1740, "height": y - 100})
    c.viewport(1800, 3800)
    c.js("[...document.querySelectorAll('button[role=switch]')].forEach(b=>b.click())")  # "Show diff only"
    time.sleep(1.5)
    y0, y1 = c.top_of("Run details"), c.top_of("Artifacts")
    c.shot(f"{a.out}/compare.png", clip={"x": 40, "y": y0 - 15, "width": 1740, "height": y1 - y0})


if __name__ == "__main__":
    main()
