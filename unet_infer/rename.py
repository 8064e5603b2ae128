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
from .formats import inside
from .progress import set_quiet
from .summary import filesinfo_entries, read_summary
from .workdir import run_paths

PROG = "python3 -m unet_infer.rename"


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
    """``[(output name, stem of infiles[0] + suffix of outfiles[0]), ...]`` of an ais_bench summary, base
    names only, one-to-one (else a :class:`UserError`: an output twice, one name twice, a cycle)."""
    plan = []
    for key, entry in filesinfo_entries(summary):
        if not entry["infiles"] or not entry["outfiles"]:
            raise UserError(f"summary entry {key!r} has no input or no output file")
        src = _base_name(entry["outfiles"][0], "output file", key)
        stem = Path(_base_name(entry["infiles"][0], "input file", key)).stem
        dst = _base_name(stem + Path(src).suffix, "new name", key)
        plan.append((src, dst))
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
    return plan


def _chains(plan):
    """A checked plan as chains ``[n0, ..., nk]`` (rename n(i) -> n(i+1), done from the end backwards
    so that no file is overwritten; ``[n0]``: keeps its name); renames in a cycle are left out."""
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
    """(renames to do, renames already done, problem or None): a chain n0..nk has exactly one name
    missing, nk (none done) ... n0 (all done); any other state is a problem."""
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
    """Carry out ``plan`` in ``output_dir``: ``(n_renamed, n_already_done)``; every name is checked
    before the first rename, the problems reported together as a :class:`UserError`."""
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
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise UserError("; ".join(problems[:5]) + more + "; nothing renamed")
    for src, dst in todo:
        try:
            os.rename(folder / src, folder / dst)
        except OSError as exc:
            raise UserError(f"cannot rename {folder / src} to {dst}: {exc.strerror or exc}") from None
    return len(todo), done


def main(argv=None, prog=PROG):
    parser = cli.parser(prog, __doc__)
    parser.add_argument("--output", required=True,
                        help="the runner's output folder, e.g. result/bs8 (its summary lies beside it)")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    folder = Path(args.output)  # result/bs8 -> result/bs8_summary.json, where ais_bench writes it
    if folder.name in ("", ".", ".."):
        folder = Path(os.path.abspath(folder))
    renamed, done = apply_plan(args.output, rename_plan(read_summary(run_paths(folder.parent, folder.name)[1])))
    print(f"renamed {renamed} file{'s' if renamed != 1 else ''} ({done} already done) in {args.output}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
