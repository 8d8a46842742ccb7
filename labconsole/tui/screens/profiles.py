"""Open a profile: switch benches inside the console (`ctrl+o`, `p` on the Bench, or the palette).

Lists the YAML files under `profiles/` (where the console started, and beside the profile
open now) and takes a typed path; the profile is loaded in a worker thread (the console does
no I/O on its loop) and a profile that does not load shows the loader's `FILE:LINE: field:
reason` here, leaving the open one as it was.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from labconsole.profile import ProfileError, default_profile_path, load_profile


def profile_files(folders: list[Path]) -> list[Path]:
    """The *.yaml / *.yml files of `folders` (each once, sorted by name), then the built-in bench."""
    seen: dict[Path, Path] = {}
    for folder in folders:
        try:
            items = sorted(list(folder.glob("*.yaml")) + list(folder.glob("*.yml")))
        except OSError:
            continue
        for p in items:
            seen.setdefault(p.resolve(), p)
    out = list(seen.values())
    builtin = default_profile_path()
    if builtin.resolve() not in seen:
        out.append(builtin)
    return out


def _shown(path: Path) -> str:
    """A path as short as it reads: relative to the folder the console started in, when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class ProfileScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, folders: list[Path]):
        super().__init__()
        self.folders = folders
        self.paths: list[Path] = []
        self.loading = False

    def compose(self) -> ComposeResult:
        with Vertical(id="profiles-box"):
            yield Static("[b]Open a profile[/]  [dim]↑/↓ and Enter, or type a path below; esc cancels[/]", id="profiles-title")
            yield OptionList(id="profiles-list")
            yield Input(placeholder="or a profile's path, then Enter", id="profiles-path", compact=True)
            yield Static("", id="profiles-error")

    def on_mount(self) -> None:
        self.query_one("#profiles-list", OptionList).focus()
        self._list()

    @work(thread=True, exclusive=True, group="list-profiles", exit_on_error=False)
    def _list(self) -> None:
        paths = profile_files(self.folders)
        self.app.call_from_thread(self._listed, paths)

    def _listed(self, paths: list[Path]) -> None:
        self.paths = paths
        current = Path(self.app.loaded.path).resolve()
        ol = self.query_one("#profiles-list", OptionList)
        ol.clear_options()
        for p in paths:
            mark = "  [green](open now)[/]" if p.resolve() == current else ""
            builtin = "  [dim]built-in simulated bench[/]" if p == default_profile_path() else ""
            ol.add_option(Option(f"{escape(_shown(p))}{mark}{builtin}"))
        if paths:
            ol.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if 0 <= event.option_index < len(self.paths):
            self._open(self.paths[event.option_index])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self._open(Path(text).expanduser())

    def _open(self, path: Path) -> None:
        if self.loading:
            return
        self.loading = True
        self.query_one("#profiles-error", Static).update(f"[dim]loading {escape(str(path))}...[/]")
        self._load(path)

    @work(thread=True, exclusive=True, group="load-profile", exit_on_error=False)
    def _load(self, path: Path) -> None:
        try:
            loaded = load_profile(path)
        except FileNotFoundError:
            self.app.call_from_thread(self._failed, f"{path} does not exist (n on the Bench, or ctrl+p \"Set up a bench\", writes a new profile)")
            return
        except ProfileError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except OSError as exc:
            self.app.call_from_thread(self._failed, f"cannot read {path}: {exc.strerror or exc}")
            return
        self.app.call_from_thread(self._loaded, loaded)

    def _failed(self, message: str) -> None:
        self.loading = False
        self.query_one("#profiles-error", Static).update(f"[red]{escape(message)}[/]")

    def _loaded(self, loaded) -> None:
        self.loading = False
        self.dismiss(None)
        self.app.open_profile(loaded)

    def action_cancel(self) -> None:
        self.dismiss(None)
