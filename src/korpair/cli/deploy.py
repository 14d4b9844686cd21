"""``korpair serve``, ``export`` and ``push``: a trained model put to use, over HTTP, as ONNX or on the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from korpair.cli.app import DEFAULT_PRECISION, Backend, BackendName, Calibrated, Precision, fail, out, run, verbose


def serve(
    model_dir: Annotated[Path, typer.Argument(help="model folder saved by korpair (or any HF classifier)")],
    host: Annotated[str, typer.Option(
        help="address to listen on; 0.0.0.0 lets other machines in (no auth)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one")] = 8000,
    max_batch_size: Annotated[Optional[int], typer.Option(
        help="pairs per model call, gathered from concurrent requests", show_default="32")] = None,
    max_wait_ms: Annotated[Optional[float], typer.Option(
        help="how long a free model waits for requests to batch with", show_default="5")] = None,
    max_batch_tokens: Annotated[Optional[int], typer.Option(
        help="padded tokens per model call: merged requests run longest first in calls this size",
        show_default="2048")] = None,
    batching: Annotated[bool, typer.Option("--batching/--no-batching",
                                           help="merge concurrent requests into one model call")] = True,
    max_text_chars: Annotated[Optional[int], typer.Option(help="characters per premise or hypothesis",
                                                          show_default="1000")] = None,
    max_pairs: Annotated[Optional[int], typer.Option(help="pairs per request", show_default="64")] = None,
    max_body_bytes: Annotated[Optional[int], typer.Option(help="request body size; larger ones get 413",
                                                          show_default="1048576")] = None,
    max_queue_pairs: Annotated[Optional[int], typer.Option(
        help="pairs waiting for the model; a request that would pass it gets 503", show_default="1024")] = None,
    request_timeout_s: Annotated[Optional[float], typer.Option(
        help="seconds from a request's headers to its answer; then 408 or 503", show_default="30")] = None,
    header_timeout_s: Annotated[Optional[float], typer.Option(
        help="seconds a connection may take to send its request headers; then it is closed", show_default="10")] = None,
    keep_alive_s: Annotated[Optional[float], typer.Option(help="seconds an idle keep-alive connection stays open",
                                                          show_default="5")] = None,
    max_connections: Annotated[Optional[int], typer.Option(
        help="open connections; past it the longest idle one is closed", show_default="1000")] = None,
    allowed_hosts: Annotated[Optional[list[str]], typer.Option(
        help="Host names served besides localhost, 127.0.0.1 and [::1] (repeat or comma-separate; "
             "'*.example.org' subdomains, '*' any)", metavar="NAMES", show_default="none")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N", show_default="cuda if available")] = None,
    precision: Precision = DEFAULT_PRECISION,
    backend: Backend = BackendName.auto,
    calibration: Calibrated = True,
) -> None:
    """Serve a model over HTTP: JSON API (/predict, /docs) and a Korean demo page (/). Ctrl+C stops it."""
    from korpair import api

    # Only the options given: ServeLimits holds the defaults.
    options = {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms,
               "max_batch_tokens": max_batch_tokens, "batching": batching,
               "max_text_chars": max_text_chars, "max_pairs": max_pairs, "max_body_bytes": max_body_bytes,
               "max_queue_pairs": max_queue_pairs, "request_timeout_s": request_timeout_s,
               "header_timeout_s": header_timeout_s, "keep_alive_s": keep_alive_s, "max_connections": max_connections,
               "allowed_hosts": allowed_hosts}
    run(lambda: api.serve(model_dir, host=host, port=port, device=device, precision=precision.value,
                          backend=backend.value, calibrated=calibration,
                          limits={k: v for k, v in options.items() if v is not None}, verbose=verbose()), "serve")


def export(
    model_dir: Annotated[Path, typer.Argument(help="model folder to export")],
    format: Annotated[str, typer.Option(
        "--format", help="auto: every backend this installation runs (ONNX, OpenVINO: fp32 and int8), each timed "
                         "here, the fastest recorded for predict/evaluate/serve; or onnx, openvino")] = "auto",
    quantize: Annotated[Optional[str], typer.Option(
        help="int8 (with --format onnx or openvino): int8 weights; OpenVINO's is calibrated on real pairs")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(
        "--output-dir", "-o", help="with --format onnx/openvino; default: MODEL_DIR/FORMAT (or FORMAT-int8)")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="pairs to time and calibrate on (CSV/TSV/JSONL/JSON); default: the model's own validation split")] = None,
    min_agreement: Annotated[float, typer.Option(
        help="with --format auto: the share of pairs a backend must label as PyTorch fp32 does to be chosen")] = 0.99,
) -> None:
    """Export for faster inference: every backend, timed on this machine (default), or one format."""
    from korpair import api

    if format not in ("auto", "onnx", "openvino"):
        fail(f"--format {format!r}: expected auto, onnx or openvino")
    if quantize not in (None, "int8"):
        fail(f"--quantize {quantize!r}: only 'int8' is supported")
    if format == "auto":
        if quantize is not None or output_dir is not None:
            fail("--quantize and --output-dir go with --format onnx or openvino; --format auto exports every "
                 "backend into the model folder")
        record = run(lambda: api.export_backends(model_dir, data, min_agreement=min_agreement, verbose=verbose(),
                                                 progress=lambda m: out.print(f"  {m}", highlight=False)), "export")
        _print_backends(model_dir, record)
        return
    folder = run(lambda: api.export(model_dir, output_dir, quantize=quantize == "int8", format=format, data=data,
                                    verbose=verbose()), "export")
    out.print(f"exported to {folder}  (korpair predict/evaluate/serve {folder})")


def _print_backends(model_dir: Path, record: dict) -> None:
    from rich.table import Table

    table = Table(title=f"backends of {model_dir} on {record['machine']['cpu']}")
    for col in ("backend", "pairs/s", "vs torch", "agreement", ""):
        table.add_column(col, justify="left" if col in ("backend", "") else "right")
    base = record["backends"]["torch"]["pairs_per_s"]
    for name, entry in record["backends"].items():
        agree = entry.get("label_agreement", entry.get("spearman"))
        mark = "chosen" if name == record["fastest"] else ("" if entry["eligible"] else "agreement too low")
        table.add_row(name, f"{entry['pairs_per_s']:.1f}", f"{entry['pairs_per_s'] / base:.2f}x",
                      "reference" if name == "torch" else ("-" if agree is None else f"{agree:.4f}"), mark)
    out.print(table)
    out.print(f"korpair predict/evaluate/serve {model_dir} now run on {record['fastest']} "
              f"(--backend NAME picks another; recorded in {model_dir / 'backends.json'})", highlight=False)


def push(
    model_dir: Annotated[Path, typer.Argument(help="model folder to publish; ONNX exports inside it go too")],
    repo_id: Annotated[str, typer.Argument(help="OWNER/NAME on the Hugging Face Hub")],
    private: Annotated[bool, typer.Option(help="create the repository as private")] = False,
    revision: Annotated[Optional[str], typer.Option(help="branch to push to, created if missing",
                                                    show_default="the default branch")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check everything and list what would be sent; "
                                                            "send nothing")] = False,
) -> None:
    """Publish a model folder with its model card on the Hugging Face Hub (token from HF_TOKEN or `hf auth login`)."""
    from rich.filesize import decimal
    from rich.table import Table

    from korpair import api

    plan = run(lambda: api.push_to_hub(model_dir, repo_id, private=private, revision=revision, dry_run=dry_run),
               "push")
    table = Table("file", "size", box=None, header_style="bold")
    for f in plan.files:
        table.add_row(f.path, decimal(f.size))
    out.print(table)
    meta = plan.card_metadata
    out.print(f"{len(plan.files)} files, {decimal(plan.total_bytes)}; card: license {meta.get('license')}, "
              f"language {meta.get('language')}, tags {', '.join(meta.get('tags') or [])}")
    where = f"{repo_id}" + (f" (branch {revision})" if revision else "") + (" as private" if private else "")
    if dry_run:
        out.print(f"dry run: nothing sent; without --dry-run these go to {where}")
    else:
        out.print(f"pushed to {where}: {plan.url}")

