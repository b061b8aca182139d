"""Find where a dotted field path (`model.hidden_sizes.0`) is written in a YAML spec, so errors can point
at `file:line:column` the way compilers do."""

import yaml


def locate(text: str, dotted: str) -> tuple[int, int] | None:
    """1-based (line, column) of the deepest node of `dotted` present in the YAML text; None when the text
    does not parse or the path's first key is absent."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    found: yaml.Node | None = None
    for key in dotted.split("."):
        child = _child(node, key) if node is not None else None
        if child is None:
            break
        found = node = child
    if found is None:
        return None
    return found.start_mark.line + 1, found.start_mark.column + 1


def _child(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for name, value in node.value:
            if isinstance(name, yaml.ScalarNode) and name.value == key:
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and key.isdigit() and int(key) < len(node.value):
        return node.value[int(key)]  # type: ignore[no-any-return]
    return None
