"""``ukbmri ml4h``: working with the published ml4h liver networks.

* ``check-normalisation``: which input normalisation makes the student track the teacher;
* ``import``: an ml4h Keras file -> a ukbmri liver weights folder with explicit settings.
"""

from __future__ import annotations

import csv
from pathlib import Path

import click


@click.group()
def ml4h() -> None:
    """Published ml4h liver networks: import, check their settings (docs/ml4h.md)."""


@ml4h.command("check-normalisation")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--teacher", "teacher_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="Teacher weights: liver_fat_from_echo.h5 or a weights folder.")
@click.option("--student", "student_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="Student weights: liver_fat_from_ideal.h5 or a weights folder.")
@click.option("--out", "out_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write per-visit predictions (teacher and each student variant) to this CSV.")
@click.option("--max-visits", default=200, show_default=True, type=click.IntRange(min=1),
              help="Use at most this many visits (about 10 MB of tensors each).")
@click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda, auto).")
def check_normalisation(inputs, teacher_path, student_path, out_csv, max_visits, device) -> None:
    """Pick the student's input normalisation from data.

    INPUTS are zips or folders (searched recursively); visits with both a 20203 and a 20254
    zip are used. The student runs with each input normalisation (zero_mean_std1, none); the
    one whose predictions agree best with the teacher's (lowest mean absolute difference) is
    the one it was trained with. Use the answer with `ukbmri ml4h import --input-normalisation`.
    """
    from ukbmri.infer.liver_nets import load_liver_net
    from ukbmri.infer.ml4h_check import check_normalisation_from_zips

    teacher = load_liver_net(teacher_path, device=device)
    student = load_liver_net(student_path, device=device)
    check, keys, failed = check_normalisation_from_zips(teacher, student, inputs, max_visits=max_visits,
                                                        device=device)  # fmt: skip
    for eid, inst, why in failed:
        click.echo(f"not used: {eid} visit {inst}: {why}", err=True)
    click.echo(check.summary())
    click.echo(f"current default for {student_path.name}: {student.input_normalisation!r}")
    if out_csv is not None:
        with open(out_csv, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["eid", "instance", "teacher_percent", *[f"student_{v.normalisation}_percent"
                                                                 for v in check.variants]])  # fmt: skip
            for k, (eid, inst) in enumerate(keys):
                w.writerow([eid, inst, check.teacher_percent[k], *[v.student_percent[k] for v in check.variants]])
        click.echo(f"per-visit predictions -> {out_csv}")


@ml4h.command("import")
@click.argument("keras_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New weights folder (model.json + weights.pt).")
@click.option("--input-normalisation", type=click.Choice(["zero_mean_std1", "none"]), default=None,
              help="Override the documented default for this file (see check-normalisation).")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder.")
def import_(keras_file, out_dir, input_normalisation, overwrite) -> None:
    """Convert an ml4h Keras liver file into a ukbmri weights folder with explicit settings."""
    from ukbmri.infer.liver_nets import load_liver_net, save_liver_net

    net = load_liver_net(keras_file, input_normalisation=input_normalisation)
    structural = {"format", "kind", "input_shape", "kernel_size", "mean_variance", "weights_sha256",
                  "label_normalisation", "input_tensor_map", "output_tensor_map"}  # fmt: skip
    info = {k: v for k, v in net.info.items() if k not in structural}
    info["imported_from_sha256"] = net.weights_sha256
    save_liver_net(out_dir, net.model, kind=net.kind, info=info, overwrite=overwrite)
    click.echo(f"{net.kind} from {keras_file.name} (input normalisation {net.input_normalisation}) -> {out_dir}")
