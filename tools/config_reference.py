"""Print the config reference table for the README from the pydantic models.

    python -m tools.config_reference > /tmp/ref.md
"""

import json

from korpair.config import TrainConfig


def reference() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for section, field in TrainConfig.model_fields.items():
        model = field.annotation
        defaults = TrainConfig().to_dict()[section]
        for name, f in model.model_fields.items():
            default = defaults[name]
            meaning = (f.description or "").replace("|", "\\|")
            lines.append(f"| `{section}.{name}` | `{json.dumps(default, ensure_ascii=False)}` | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference())
