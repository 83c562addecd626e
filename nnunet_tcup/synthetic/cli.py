"""``nnunet_tcup synth``: write synthetic BraTS 2023-like case folders. Light imports only (argparse)."""

from __future__ import annotations

import argparse

from nnunet_tcup.parallel import non_negative_int, positive_int

DESCRIPTION = """\
Write synthetic BraTS 2023-like cases: OUT/BraTS-CH-NNNNN-000/BraTS-CH-NNNNN-000-{t1n,t1c,t2w,t2f,seg}.nii.gz
(int16 images, uint8 seg with 0 = background, 1 = NETC, 2 = SNFH, 3 = ET; 1 mm voxels; BraTS orientation:
affine diag(-1, -1, 1) with y origin Y-1, voxel axes L, P, S). Brains come from the MNI152 2009a template
shipped with nilearn (analytic fallback without it), skull-stripped; tumours with necrosis, enhancing rim,
edema along white matter, satellites and mass effect; bias field, blur, Rician noise and unlabelled look-alikes.
Existing identical files are kept (re-running completes missing cases); a case file with different content is
an error."""

EPILOG = """\
challenge variants: GLI adult glioma (white matter, necrotic core, wide edema); MEN meningioma (extra-axial at the
brain surface, mostly enhancing, dural tail, little necrosis); PED paediatric (smaller heads, lower GM/WM contrast,
posterior-fossa tumours, little edema); SSA glioma with lower image quality (more noise, stronger bias, thick-slice
blur) and larger tumours.
example: nnunet_tcup synth data/GLI --challenge GLI --cases 10 --shape 96 96 64 --seed 1"""


def register(subparsers) -> None:
    """Add the ``synth`` sub-parser."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic BraTS 2023-like case folders",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="output folder; case folders are created inside it")
    p.add_argument(
        "--challenge",
        required=True,
        metavar="{GLI,MEN,PED,SSA}",
        help="BraTS 2023 challenge whose cases to imitate (case-insensitive)",
    )
    p.add_argument("--cases", required=True, type=positive_int, metavar="N", help="number of cases to write")
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        metavar="S",
        help="base random seed; case i uses a seed derived from (S, i), so output is reproducible (default: 0)",
    )
    p.add_argument(
        "--shape",
        type=positive_int,
        nargs=3,
        default=[240, 240, 155],
        metavar=("X", "Y", "Z"),
        help="grid size in voxels (x y z), each 16..1024; the 240x240x155 mm BraTS field of view is "
        "mapped onto it, so anatomy and tumours shrink with it (default: 240 240 155)",
    )
    p.add_argument(
        "--no-seg",
        action="store_true",
        help="do not write the -seg files (like BraTS validation cases); images are unchanged",
    )
    p.add_argument(
        "--start-index",
        type=non_negative_int,
        default=1,
        metavar="I",
        help="case number of the first case (ids BraTS-CH-IIIII-000 onwards; default: 1)",
    )
    p.add_argument(
        "--num-workers",
        type=positive_int,
        default=None,
        metavar="W",
        help="processes generating cases in parallel (default: $nnUNet_def_n_proc if set, else the CPU count up to 4)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--anatomy",
        choices=("auto", "mni152", "analytic"),
        default="auto",
        help="brain anatomy: the MNI152 template from nilearn's wheel, the analytic ellipsoid "
        "fallback, or auto (MNI152 when available; default)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_tcup.synthetic.writer import write_dataset

    folders = write_dataset(
        args.out,
        args.challenge,
        args.cases,
        seed=args.seed,
        shape=tuple(args.shape),
        with_seg=not args.no_seg,
        start_index=args.start_index,
        num_workers=args.num_workers,
        anatomy=args.anatomy,
        progress=not args.no_progress,
    )
    print(f"wrote {len(folders)} case folder(s) to {args.out}")
    return 0
