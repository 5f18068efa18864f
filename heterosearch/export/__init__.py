"""Export: allocation.json (ours), adapter_config.json (PEFT LoraConfig), atomic files."""

from heterosearch.export.allocation_file import read_allocation, write_allocation
from heterosearch.export.files import read_json, write_json, write_text
from heterosearch.export.peft_config import check_peft_roundtrip, lora_config, peft_adapter_params, save_lora_config

__all__ = [
    "check_peft_roundtrip",
    "lora_config",
    "peft_adapter_params",
    "read_allocation",
    "read_json",
    "save_lora_config",
    "write_allocation",
    "write_json",
    "write_text",
]
