/* Embeds lua/decide.lua in the binaries as decide_lua_text (NUL-ended). */
	.section .rodata
	.global decide_lua_text
	.type decide_lua_text, @object
decide_lua_text:
	.incbin "decide.lua"
	.byte 0
	.section .note.GNU-stack,"",@progbits
