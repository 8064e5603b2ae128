"""Stage 5: give each output its image's name, from the runner's summary.

The guide's command:

    python3 json_parse.py --output=result/bs8/

(the same as ``python3 -m unet_infer.rename --output=result/bs8/``) reads
result/bs8_summary.json and renames, inside result/bs8, each entry's outfiles[0] to the stem of
its infiles[0] (<stem>_0.bin -> <stem>.bin). Base names only: nothing outside the folder is
touched. The whole plan is checked first; an existing file is never overwritten; running it
again changes nothing, and a run killed half-way finishes when run again.
"""

import os
from pathlib import Path

from . import cli
from .cli import UserError
from .paths import inside
from .progress import set_quiet
from .summary import filesinfo_entries, read_summary
from .workdir import run_paths

PROG = "python3 -m unet_infer.rename"
_MAX_LISTED = 5


def summary_path(output_dir):
    """``result/bs8`` -> ``result/bs8_summary.json`` (where ais_bench writes it)."""
    folder = Path(output_dir)
    if folder.name in ("", ".", ".."):
        folder = Path(os.path.abspath(folder))
    return run_paths(folder.parent, folder.name)[1]


def _base_name(path, what, key):
    name = os.path.basename(path)
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        name = ""
    if name in ("", ".", "..") or "\0" in name:
        raise UserError(f"summary entry {key!r}: {what} {path!r} has no usable file name")
    return name


def rename_plan(summary):
    """``[(output name, new name), ...]`` from an ais_bench summary, base names only.

    The new name is the stem of ``infiles[0]`` plus the suffix of ``outfiles[0]``. The plan is
    one-to-one: an output listed twice, two outputs given one name, or renames that form a
    cycle are a :class:`UserError`.
    """
    plan = []
    for key, entry in filesinfo_entries(summary):
        if not entry["infiles"] or not entry["outfiles"]:
            raise UserError(f"summary entry {key!r} has no input or no output file")
        src = _base_name(entry["outfiles"][0], "output file", key)
        stem = Path(_base_name(entry["infiles"][0], "input file", key)).stem
        dst = _base_name(stem + Path(src).suffix, "new name", key)
        plan.append((src, dst))
    _check_one_to_one(plan)
    return plan


def _check_one_to_one(plan):
    sources, targets = {}, {}
    for src, dst in plan:
        if src in sources:
            raise UserError(f"summary lists output {src} twice")
        if dst in targets:
            raise UserError(f"outputs {targets[dst]} and {src} would both be renamed to {dst}")
        sources[src], targets[dst] = dst, src
    chained = {name for chain in _chains(plan) for name in chain}
    cycle = [src for src, _ in plan if src not in chained]
    if cycle:
        raise UserError(f"the renames form a cycle: {', '.join(cycle)}")


def _chains(plan):
    """Split a checked plan into chains ``[n0, n1, ..., nk]`` (rename n(i) -> n(i+1)).

    A one-element chain is a name that keeps its name. Files are renamed from the end of a
    chain backwards so that no file is overwritten. Renames that form a cycle are left out.
    """
    moves = {src: dst for src, dst in plan if src != dst}
    targets = set(moves.values())
    chains = [[src] for src, dst in plan if src == dst]
    for head in moves:
        if head in targets:
            continue
        chain = [head]
        while chain[-1] in moves:
            chain.append(moves[chain[-1]])
        chains.append(chain)
    return chains


def _chain_state(folder, chain):
    """(renames to do as (src, dst) pairs, renames already done, problem or None).

    A chain n0..nk passes through states with exactly one missing name: none done (nk
    missing) ... all done (n0 missing). Any other state is a problem.
    """
    exists = [os.path.lexists(folder / name) for name in chain]
    missing = [i for i, here in enumerate(exists) if not here]
    last = len(chain) - 1
    if last == 0:
        return [], 1, None if exists[0] else f"{folder / chain[0]}: output file not found"
    if not missing:
        return [], 0, (f"{folder / chain[-1]} already exists and {folder / chain[-2]} would "
                       "replace it; move one of them away")
    if len(missing) > 1:
        lost = ", ".join(str(folder / chain[i]) for i in missing if i < last)
        return [], 0, f"output file(s) not found, neither renamed: {lost}"
    gap = missing[0]
    for i in range(gap):
        if not (folder / chain[i]).is_file():
            return [], 0, f"{folder / chain[i]}: not a regular file"
    todo = [(chain[i], chain[i + 1]) for i in range(gap - 1, -1, -1)]
    return todo, last - gap, None


def apply_plan(output_dir, plan):
    """Carry out ``plan`` in ``output_dir``; return ``(n_renamed, n_already_done)``.

    Every name is checked (stays inside the folder, no overwrite, output present or already
    renamed) before the first rename; problems are reported together as a :class:`UserError`.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: output folder not found")
    problems = []
    for src, dst in plan:
        for name in (src, dst):
            if inside(folder, name) is None:
                problems.append(f"{folder / name}: leads outside {folder}")
    todo, done = [], 0
    if not problems:
        for chain in _chains(plan):
            moves, finished, problem = _chain_state(folder, chain)
            if problem:
                problems.append(problem)
            todo.extend(moves)
            done += finished
    if problems:
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise UserError("; ".join(problems[:_MAX_LISTED]) + more + "; nothing renamed")
    for src, dst in todo:
        try:
            os.rename(folder / src, folder / dst)
        except OSError as exc:
            raise UserError(f"cannot rename {folder / src} to {dst}: {exc.strerror or exc}") from None
    return len(todo), done


def rename_outputs(output_dir):
    """Stage 5 as a whole: read ``<output_dir>_summary.json``, rename; ``(renamed, done)``."""
    return apply_plan(output_dir, rename_plan(read_summary(summary_path(output_dir))))


def build_parser(prog=PROG):
    parser = cli.parser(prog, __doc__)
    parser.add_argument("--output", required=True,
                        help="the runner's output folder, e.g. result/bs8 (its summary lies beside it)")
    cli.add_quiet(parser)
    return parser


def main(argv=None, prog=PROG):
    args = build_parser(prog).parse_args(argv)
    set_quiet(args.quiet)
    renamed, done = rename_outputs(args.output)
    print(f"renamed {renamed} file{'s' if renamed != 1 else ''} ({done} already done) in {args.output}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
