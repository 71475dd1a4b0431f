"""Encoding throughput of a 3 x 256 residual tokenizer against faiss ResidualQuantizer and a plain
NumPy greedy encoder, with the reconstruction MSE of each.

All encoders quantize the same rows. Ours and the NumPy reference use the same RQ-KMeans
codebooks (so their codes must agree); faiss trains its own residual quantizer on the same data
and encodes with beam size 1 and with its default beam. Ours also encodes with RQ-GMM
codebooks (a posterior argmax: twice the arithmetic of a nearest-codeword search). Every encoder
runs with the library's default chunking.

Run from the repository root:
    python -m benchmarks.bench_encode [--data synthetic|ml-100k] [--n 200000] [--dim 128] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import warnings

import faiss
import numpy as np

from benchmarks.common import DATA_SETS, add_markdown_option, load_data, recorded_output, timed, write_json
from rqgmm import RQGMM, RQKMeans


def numpy_greedy(X: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    """Reference: nearest codeword of the residual, level by level, in chunks: (n, L) int64."""
    codes = np.empty((len(X), len(codebooks)), dtype=np.int64)
    for start in range(0, len(X), 16384):
        residual = X[start:start + 16384].copy()
        for level, codebook in enumerate(codebooks):
            scores = 2 * residual @ codebook.T - np.square(codebook).sum(1)
            chosen = scores.argmax(1)
            codes[start:start + len(chosen), level] = chosen
            residual -= codebook[chosen]
    return codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA_SETS, default="synthetic")
    parser.add_argument("--n", type=int, default=200_000, help="rows of the synthetic set")
    parser.add_argument("--dim", type=int, default=128, help="dimension of the synthetic set")
    parser.add_argument("--out", default=None)
    add_markdown_option(parser)
    args = parser.parse_args()
    with recorded_output(args.markdown, "Residual encoding against NumPy and faiss ResidualQuantizer"):
        X = load_data(args.data, args.n, args.dim)
        n, dim = X.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = RQKMeans(n_levels=3, codebook_size=256, max_iter=10, random_state=0, progress=False).fit(X)
            gmm = RQGMM(n_levels=3, codebook_size=256, max_iter=10, random_state=0, progress=False).fit(X)
        rows = {}
        tokenizer.encode(X[:1000])  # first-call set-up is not throughput
        codes, seconds = timed(tokenizer.encode, X)
        rows["rqgmm (RQ-KMeans codebooks)"] = (seconds, float(np.mean((tokenizer.decode(codes) - X) ** 2)))
        gmm.encode(X[:1000])
        gmm_codes, seconds = timed(gmm.encode, X)
        rows["rqgmm (RQ-GMM codebooks)"] = (seconds, float(np.mean((gmm.decode(gmm_codes) - X) ** 2)))
        reference, seconds = timed(numpy_greedy, X, tokenizer.codebooks_)
        assert np.mean(reference == codes) > 0.999, "the NumPy reference disagrees with rqgmm's codes"
        rows["numpy greedy (same codebooks)"] = (seconds, rows["rqgmm (RQ-KMeans codebooks)"][1])
        quantizer = faiss.ResidualQuantizer(dim, 3, 8)
        quantizer.max_beam_size = 1
        quantizer.train(X)
        for beam in (1, 5):
            quantizer.max_beam_size = beam
            packed, seconds = timed(quantizer.compute_codes, X)
            rows[f"faiss ResidualQuantizer beam {beam}"] = (seconds, float(np.mean((quantizer.decode(packed) - X) ** 2)))
        ours_rate = n / rows["rqgmm (RQ-KMeans codebooks)"][0]
        print(f"encode {args.data} {n} x {dim}, 3 levels x 256 codes")
        print(f"{'encoder':36} {'rows/s':>10} {'MSE':>9} {'vs rqgmm':>9}")
        result = {"data": args.data, "n": n, "dim": dim, "encoders": {}}
        for name, (seconds, mse) in rows.items():
            rate = n / seconds
            print(f"{name:36} {rate:10,.0f} {mse:9.5f} {rate / ours_rate:8.2f}x")
            result["encoders"][name] = {"rows_per_second": rate, "mse": mse}
        faiss_rate = n / rows["faiss ResidualQuantizer beam 1"][0]
        print(f"rqgmm (RQ-KMeans codebooks) / faiss beam 1: {ours_rate / faiss_rate:.2f}x the rows/s")
        write_json(args.out, result)


if __name__ == "__main__":
    main()
