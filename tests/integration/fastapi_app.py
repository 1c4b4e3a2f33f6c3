"""The FastAPI application tests/integration/test_fastapi_uvicorn.py serves
with `python -m uvicorn fastapi_app:app --app-dir tests/integration --loop ...`.
It reports the loop it runs on, so the test can check uvicorn used the loop it
was told to."""
import asyncio
import sys

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

app = FastAPI()
ITEMS = {}


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: list[str] = []


@app.get("/loop")
async def which_loop():
    loop = asyncio.get_running_loop()
    return {"module": type(loop).__module__, "class": type(loop).__qualname__}


@app.post("/items/{item_id}", status_code=201)
async def create_item(item_id: int, item: Item):
    if item_id in ITEMS:
        raise HTTPException(status_code=409, detail="exists")
    ITEMS[item_id] = item
    return {"id": item_id, **item.model_dump()}


@app.get("/items/{item_id}")
async def read_item(item_id: int, upper: bool = False):
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    item = ITEMS[item_id]
    return {"id": item_id, "name": item.name.upper() if upper else item.name,
            "price": item.price, "tags": item.tags}


@app.get("/stream")
async def stream(n: int):
    async def lines():
        for i in range(n):
            yield f"{i}\n"
            await asyncio.sleep(0)
    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/slow")
async def slow(seconds: float):
    # the graceful-shutdown test waits for this line before sending SIGTERM
    print(f"slow request started ({seconds})", file=sys.stderr, flush=True)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/offload")
async def offload():
    """Runs blocking work in the loop's default executor."""
    loop = asyncio.get_running_loop()
    total = await loop.run_in_executor(None, sum, range(1000))
    return {"total": total}
