"""Methods: one package each, found by ``fuse.registry.load_methods``.

Importing a method's package registers its model kinds, stages and evaluation protocols. Every
package in this folder is a method; methods shipped by other distributions declare an entry
point in the ``fuse.methods`` group (``[project.entry-points."fuse.methods"] name = "pkg"``).
"""
