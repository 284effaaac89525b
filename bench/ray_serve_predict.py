"""The anchor of `bench_api.py`: the same predict endpoint as `ferrocluster-api`, the way the
original project served it — Ray Serve + FastAPI wrapping scikit-image (decode, HOG) and
scikit-learn (KMeans), with `@serve.batch(max_batch_size=10, batch_wait_timeout_s=0.01)` and
`max_ongoing_requests=5`. Run with Ray 2.60's interpreter (`.venv-ray`):

    python bench/ray_serve_predict.py --images DIR --k 10 --port 8123

It trains KMeans on the HOG features of the PNGs in DIR, serves `POST /v1/models/m/predict`
(JSON `{"images": [{"name", "data": base64}]}`, the answer as ferrocluster's: cluster, distances
to every centre, nearest training examples of that cluster), prints `READY` and serves until
its standard input closes.
"""

import argparse
import base64
import io
import sys
from pathlib import Path

import numpy as np
import ray
from fastapi import FastAPI, Request
from PIL import Image
from ray import serve
from skimage.feature import hog
from skimage.transform import resize
from sklearn.cluster import KMeans

SIZE = 64
NEAREST = 5


def features(png: bytes) -> np.ndarray:
    """ferrocluster's default: 64×64 RGB, HOG with 9 orientations, 8×8 cells, 2×2 blocks, L2-Hys."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255.0
    if image.shape[:2] != (SIZE, SIZE):
        image = resize(image, (SIZE, SIZE), anti_aliasing=True)
    return hog(image, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys",
               channel_axis=-1).astype(np.float32)


app = FastAPI()


@serve.deployment(max_ongoing_requests=5, num_replicas=1, health_check_period_s=10)
@serve.ingress(app)
class Predictor:
    def __init__(self, image_dir: str, k: int) -> None:
        files = sorted(Path(image_dir).glob("*.png"))
        self.names = [f.name for f in files]
        self.train = np.stack([features(f.read_bytes()) for f in files])
        self.model = KMeans(n_clusters=k, n_init=1, random_state=0).fit(self.train)
        self.members = [np.flatnonzero(self.model.labels_ == c) for c in range(k)]

    @serve.batch(max_batch_size=10, batch_wait_timeout_s=0.01)
    async def label(self, images: list[tuple[str, bytes]]) -> list[dict]:
        x = np.stack([features(data) for _, data in images])
        distances = self.model.transform(x)
        answers = []
        for (name, _), row, d in zip(images, x, distances):
            cluster = int(np.argmin(d))
            members = self.members[cluster]
            near = np.linalg.norm(self.train[members] - row, axis=1)
            order = np.argsort(near, kind="stable")[:NEAREST]
            answers.append({
                "name": name,
                "cluster": cluster,
                "distances": d.tolist(),
                "nearest": [{"index": int(members[i]), "name": self.names[members[i]], "distance": float(near[i])}
                            for i in order],
            })
        return answers

    @app.post("/v1/models/{model_id}/predict")
    async def predict(self, model_id: str, request: Request) -> dict:
        body = await request.json()
        images = [(image.get("name", f"image-{i}"), base64.b64decode(image["data"]))
                  for i, image in enumerate(body["images"])]
        predictions = [await self.label(image) for image in images]
        return {"model_id": model_id, "predictions": predictions}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(Predictor.bind(args.images, args.k), route_prefix="/")
    print("READY", flush=True)
    sys.stdin.read()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
