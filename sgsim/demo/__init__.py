"""The web demo of sound-guided editing (`sgsim demo`): a Gradio page over one Editor, one edit at a time per device."""

from sgsim.demo.engine import DemoEngine, EditCancelled, EditedRun, EditRequest, build_editor
from sgsim.demo.page import DemoPage, serve
from sgsim.demo.uploads import UploadLimits

__all__ = ["DemoEngine", "DemoPage", "EditCancelled", "EditRequest", "EditedRun", "UploadLimits", "build_editor", "serve"]
