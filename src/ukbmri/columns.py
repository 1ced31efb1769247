"""The data dictionary: every column of ``participants.csv`` with its unit, meaning,
the UK Biobank field it emulates (where one exists) and how it is computed.

``ukbmri columns`` prints it (``--format markdown|csv``); the README links the
generated table in ``docs/columns.md``. Body columns depend on the inference
modules: :func:`dictionary` builds their entries from each module's metadata.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ColumnInfo", "dictionary", "UKB_FIELDS"]


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    unit: str
    meaning: str
    ukb_field: str  #: the UK Biobank field it emulates, "" when none
    method: str


#: module target name -> the UK Biobank field it emulates (the demo module's names and MIMIR's)
UKB_FIELDS = {
    "weight": "21002", "height": "12144", "sex": "31", "vat": "22407", "asat": "22408",
    "liver_pdff": "22402", "liverFat": "22402", "AtlasLiverFat": "22436", "AtlasVatVolume": "22407",
    "AtlasAsatVolume": "22408", "waist": "48", "hip": "49",
}

_HEAD = [
    ColumnInfo("eid", "", "participant id (from the zip name <eid>_<field>_<instance>_<array>.zip)", "", "zip name"),
    ColumnInfo("instance", "", "visit (2: first imaging visit, 3: repeat imaging visit)", "", "zip name"),
    ColumnInfo("qc_flags", "", "';'-separated QC flags; empty when every check passed (see docs/qc_flags.md "
               "and docs/liver_qc.md)", "", "input, ROI and output checks of every stage"),
    ColumnInfo("exclusion_reason", "", "why the visit is on the --exclusions list (flag 'excluded')", "",
               "--exclusions file"),
]

_LIVER = [
    ("liver_fat_physics_percent", "%", "liver proton density fat fraction (PDFF), headline physics value", "22402",
     "multi-peak fat + single-R2* fit of the pooled (noise-corrected mean power) signal of the automatic liver ROI; "
     "from 20203 (GRE) when its "
     "ROI is reliable, else 20254 (IDEAL); physics_source_field says which"),
    ("liver_fat_physics_ci95_low", "%", "95 % interval of the physics PDFF, lower end", "",
     "delete-a-block jackknife of the pooled fit over the ROI, noise-level sensitivity and a model-error SD"),
    ("liver_fat_physics_ci95_high", "%", "95 % interval of the physics PDFF, upper end", "", "as above"),
    ("liver_r2star_physics_per_s", "1/s", "liver R2* (iron), physics fit", "", "as the PDFF, same fit"),
    ("liver_r2star_physics_ci95_low", "1/s", "95 % interval of R2*, lower end", "", "as for PDFF"),
    ("liver_r2star_physics_ci95_high", "1/s", "95 % interval of R2*, upper end", "", "as for PDFF"),
    ("physics_source_field", "", "the field (20203 or 20254) the headline physics values come from", "", ""),
    ("liver_roi_voxels", "voxels", "size of the liver ROI the headline values come from", "", ""),
    ("liver_roi_method", "", "what chose that ROI's liver region: 'localiser' (the network's proposal, accepted "
     "by the physics check) or 'rules' (the image rules)", "", "docs/liver_qc.md"),
    ("liver_fat_gre_physics_percent", "%", "physics PDFF from the GRE (20203)", "22402", "as the headline, GRE only"),
    ("liver_r2star_gre_physics_per_s", "1/s", "physics R2* from the GRE (20203)", "", ""),
    ("liver_fat_ideal_physics_percent", "%", "physics PDFF from the IDEAL (20254)", "22402",
     "as the headline, IDEAL only (dynamics averaged)"),
    ("liver_r2star_ideal_physics_per_s", "1/s", "physics R2* from the IDEAL (20254)", "", ""),
    ("liver_fat_teacher_percent", "%", "liver fat from the ml4h teacher network on 20203", "22402",
     "ml4h GRE network (published .h5 or ukbmri weights), mean of its mean-variance head"),
    ("liver_fat_teacher_variance", "%^2", "the teacher's calibrated predictive variance", "", ""),
    ("liver_fat_teacher_ci95_low", "%", "the teacher's 95 % interval, lower end", "", "normal interval"),
    ("liver_fat_teacher_ci95_high", "%", "the teacher's 95 % interval, upper end", "", "normal interval"),
    ("liver_fat_student_percent", "%", "liver fat from the ml4h student network on 20254", "22402",
     "ml4h IDEAL network trained on the teacher's predictions"),
    ("liver_fat_student_variance", "%^2", "the student's calibrated predictive variance", "", ""),
    ("liver_fat_student_ci95_low", "%", "the student's 95 % interval, lower end", "", "normal interval"),
    ("liver_fat_student_ci95_high", "%", "the student's 95 % interval, upper end", "", "normal interval"),
    ("gre_zip", "", "the 20203 zip read", "20203", ""),
    ("ideal_zip", "", "the 20254 zip read", "20254", ""),
    ("gre_input_sha256", "", "sha256 of the 20203 zip", "", "provenance"),
    ("ideal_input_sha256", "", "sha256 of the 20254 zip", "", "provenance"),
    ("teacher_weights_fingerprint", "", "sha256 over the teacher's weights files", "", "provenance"),
    ("student_weights_fingerprint", "", "sha256 over the student's weights files", "", "provenance"),
]


def _body(module_dirs: Sequence[str | os.PathLike[str]]) -> list[ColumnInfo]:
    from ukbmri.engine.stages.body import ModuleRef, prediction_columns
    from ukbmri.infer.weights import module_targets

    out = [ColumnInfo("body_image", "", "MIMIR 2D image name (OUT/cache/<name>.npy)", "20201",
                      "Dixon stations fused and projected as MIMIR does"),
           ColumnInfo("body_input_sha256", "", "sha256 of the 20201 zip", "", "provenance")]
    refs = [ModuleRef.of(d) for d in module_dirs]
    cols = prediction_columns(refs)
    for ref in refs:
        fields = {t.name: t.field for t in module_targets(ref.folder)}
        for name, unit in ref.targets:
            col = cols[(ref.name, name)]
            fld = fields.get(name, "/")
            fld = fld if fld not in ("/", "") else UKB_FIELDS.get(name, "")
            how = f"module {ref.name}: mean-variance network on the MIMIR 2D image, calibrated variance"
            out += [ColumnInfo(col, unit, f"{name} predicted by module {ref.name}", fld, how),
                    ColumnInfo(f"{col}_variance", f"({unit})^2", f"predictive variance of {col}", "",
                               "network variance x the module's calibration factor"),
                    ColumnInfo(f"{col}_ci95_low", unit, f"95 % interval of {col}, lower end", "",
                               "normal interval, clipped to the physical range (docs/qc_flags.md)"),
                    ColumnInfo(f"{col}_ci95_high", unit, f"95 % interval of {col}, upper end", "", "as above")]
        out.append(ColumnInfo(f"{ref.name}__module_fingerprint", "", f"sha256 over module {ref.name}'s files", "",
                              "provenance"))
    return out


def dictionary(module_dirs: Sequence[str | os.PathLike[str]] | None = None) -> list[ColumnInfo]:
    """Every column of participants.csv, in table order, for these modules (default: the bundled demo)."""
    from ukbmri.engine.run import default_body_modules

    dirs = default_body_modules() if module_dirs is None else [Path(d) for d in module_dirs]
    tail = [ColumnInfo("ukbmri_version", "", "ukbmri version that wrote the row", "", "provenance")]
    return [*_HEAD, *_body(dirs), *(ColumnInfo(*c) for c in _LIVER), *tail]
