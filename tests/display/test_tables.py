"""The one Markdown-table builder: escaped as TensorBoard's Text tab renders it, pipes kept inside cells."""

from __future__ import annotations

from tensorboard.plugin_util import markdown_to_safe_html

from mnist_lit.display.tables import escape_markdown, markdown_table


def test_escaped_keys_render_literally_in_tensorboard():
    table = markdown_table(["key", "value"], [[escape_markdown("data._target_"), escape_markdown("*bold*")]])
    html = markdown_to_safe_html(table)
    assert "<em>" not in html and "<strong>" not in html
    assert "data._target_" in html and "*bold*" in html
    unescaped = markdown_to_safe_html(markdown_table(["key"], [["data._target_"]]))
    assert "<em>" in unescaped  # what the escaping prevents


def test_a_pipe_inside_a_cell_does_not_split_it():
    table = markdown_table(["a", "b"], [["x|y", "z"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | z |"]
    assert markdown_to_safe_html(table).count("<td>") == 2
