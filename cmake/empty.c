/* SPDX-License-Identifier: MIT */
/* Placeholder translation unit for a module whose sources are not written yet. */
typedef int sk_empty_translation_unit;
